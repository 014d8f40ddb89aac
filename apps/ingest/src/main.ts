#!/usr/bin/env node
// bsfg-ingest --config <zone.yaml>: AppendFact and PutObject: writes into the zone.
import { main } from "@bsfg/boundary";

await main("ingest");
