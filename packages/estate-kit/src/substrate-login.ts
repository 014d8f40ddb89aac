import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { DevPki } from "@bsfg/pki";

/** The certificate every zone's nats-server presents (localhost, 127.0.0.1), from the estate's CA. */
export const NATS_SERVER_IDENTITY = "bsfg-nats";

/** How a zone's nats-server is closed to everyone but the zone, from both sides. */
export interface SubstrateLogin {
  /** For startNatsServer / startNatsCluster: the one user it lets in, and the TLS it demands. */
  readonly server: { readonly auth: { user: string; password: string }; readonly tls: { certPem: string; keyPem: string; caPem: string } };
  /** For the zone configuration (estateDocuments' natsLogin): the user, the file holding its password, the CA. */
  readonly zone: { readonly user: string; readonly passwordFile: string; readonly ca: string };
}

/**
 * A zone's nats-server login for an estate on this machine (tests, the campaign): a fresh
 * password in `<dir>/<zone>.nats-password` (mode 0600), the server certificate of the estate's
 * PKI (issued for NATS_SERVER_IDENTITY).
 */
export async function substrateLogin(pki: Pick<DevPki, "caCert" | "files">, dir: string, zone: string): Promise<SubstrateLogin> {
  const user = `bsfg-${zone}`;
  const password = randomBytes(18).toString("base64url");
  const passwordFile = join(dir, `${zone}.nats-password`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
  const server = pki.files[NATS_SERVER_IDENTITY];
  if (!server) throw new Error(`the estate's PKI has no certificate for ${NATS_SERVER_IDENTITY}: issue it with usage "server"`);
  return {
    server: {
      auth: { user, password },
      tls: { certPem: readFileSync(server.cert, "utf8"), keyPem: readFileSync(server.key, "utf8"), caPem: readFileSync(pki.caCert, "utf8") },
    },
    zone: { user, passwordFile, ca: pki.caCert },
  };
}
