#!/usr/bin/env node
// Entry point of `bsfg-dev-pki`; all logic lives in cli-main.ts so it can be tested in-process.
import { runCli } from "./cli-main.js";

process.exitCode = await runCli(process.argv.slice(2), {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
});
