#!/usr/bin/env node
// bsfg-zone --config <zone.yaml>: All-in-one: ingest, egress and ledger in one process, for a laptop or a small plant.
import { main } from "@bsfg/boundary";

await main("zone");
