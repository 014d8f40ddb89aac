import { readFileSync } from "node:fs";
import { repoPath } from "./docker-support.js";

/** The versions scripts/bootstrap.sh pins: the one place they are written down. */
export interface PinnedToolchain {
  readonly node: string;
  readonly nodeMajor: number;
  readonly pnpm: string;
  readonly natsServer: string;
}

export function pinnedToolchain(): PinnedToolchain {
  const script = readFileSync(repoPath("scripts", "bootstrap.sh"), "utf8");
  const pin = (name: string) => {
    const value = new RegExp(`^${name}=([0-9.]+)$`, "m").exec(script)?.[1];
    if (value === undefined) throw new Error(`scripts/bootstrap.sh pins no ${name}`);
    return value;
  };
  const node = pin("NODE_VERSION");
  return { node, nodeMajor: Number(node.split(".")[0]), pnpm: pin("PNPM_VERSION"), natsServer: pin("NATS_SERVER_VERSION") };
}
