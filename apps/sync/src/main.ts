#!/usr/bin/env node
// bsfg-sync --config <zone.yaml>: pulls the zone's peer links (sync.links), one active replica per link.
import { main } from "@bsfg/replication";

await main();
