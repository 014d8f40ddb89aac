#!/usr/bin/env node
// bsfg-egress --config <zone.yaml>: FetchFacts and the peer artifact service: reads for peers.
import { main } from "@bsfg/boundary";

await main("egress");
