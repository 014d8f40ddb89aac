import { isAbsolute, relative } from "node:path";
import { parseCliArgs, USAGE } from "./cli-args.js";
import { ensureDevPki, type CertificateOutcome } from "./dev-pki.js";

export interface CliIo {
  out(line: string): void;
  err(line: string): void;
}

/** The CLI without process globals, so tests can drive it. Resolves to the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  if (argv.includes("-h") || argv.includes("--help")) {
    io.out(USAGE);
    return 0;
  }
  let args;
  try {
    args = parseCliArgs(argv);
  } catch (err) {
    io.err(`bsfg-dev-pki: ${message(err)}`);
    io.err(USAGE);
    return 2;
  }
  try {
    const pki = await ensureDevPki(args.dir, { identities: args.identities });
    io.out(line("CA", pki.outcome.ca, show(pki.caCert)));
    for (const { identity, usage } of args.identities) {
      const files = pki.files[identity];
      const outcome = pki.outcome.identities[identity];
      if (!files || !outcome) continue;
      io.out(line(`${identity} (${usage})`, outcome, show(files.cert)));
    }
    return 0;
  } catch (err) {
    io.err(`bsfg-dev-pki: ${message(err)}`);
    return 1;
  }
}

function line(what: string, outcome: CertificateOutcome, path: string): string {
  const action = outcome.action === "reused" ? "reused" : `issued (${outcome.reason})`;
  return `${what}: ${action} -> ${path}`;
}

/** Relative to the working directory when that is shorter to read, else absolute. */
function show(path: string): string {
  const rel = relative(process.cwd(), path);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
