import { parseArgs } from "node:util";
import { ConfigError, loadZoneConfig, type ZoneConfig } from "./zone-config.js";

/**
 * The command line every deployable shares: `--config <zone.yaml>` (or
 * BSFG_CONFIG). Prints usage or every configuration problem and exits 2.
 */
export function configFromCommandLine(program: string, argv = process.argv.slice(2)): ZoneConfig {
  const { values } = parseArgs({ args: argv, options: { config: { type: "string", short: "c" } } });
  const path = values.config ?? process.env.BSFG_CONFIG;
  if (!path) {
    console.error(`usage: ${program} --config <zone.yaml>   (or set BSFG_CONFIG)`);
    process.exit(2);
  }
  try {
    return loadZoneConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
}
