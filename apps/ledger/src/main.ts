#!/usr/bin/env node
// bsfg-ledger --config <zone.yaml>: ConfirmReceipt: consumer cursors.
import { main } from "@bsfg/boundary";

await main("ledger");
