/**
 * Runs the hostile-input campaign alone and prints its result as JSON:
 *
 *   node bench/dist/campaign/hostile-main.js [--quick] [--seed N]
 *
 * Exits 1 when a "must be 0" count is not 0.
 */
import { parseArgs } from "node:util";
import { runHostileCampaign } from "./hostile.js";

const { values } = parseArgs({ options: { seed: { type: "string" }, quick: { type: "boolean", default: false } } });
const seed = Number(values.seed ?? Math.floor(Math.random() * 2 ** 31));
console.error(`hostile campaign: seed ${seed}${values.quick ? " (quick)" : ""}`);
const result = await runHostileCampaign({ seed, quick: values.quick, log: (line) => console.error(line) });
console.log(JSON.stringify(result, null, 2));
process.exitCode = result.internalErrors + result.processCrashes + result.silentDataChanges === 0 ? 0 : 1;
