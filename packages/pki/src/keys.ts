import { createPrivateKey } from "node:crypto";
import { webcrypto, x509 } from "./x509.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

// ECDSA P-256: small, fast, and supported by every TLS 1.3 stack we talk to.
const KEY_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;

/** A fresh key pair. Extractable, because the private key has to be written out as PEM. */
export async function generateKeyPair(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ["sign", "verify"])) as CryptoKeyPair;
}

/** PKCS#8 PEM, the format node:tls (OpenSSL) reads without being told the key type. */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey("pkcs8", key);
  return withTrailingNewline(x509.PemConverter.encode(der, "PRIVATE KEY"));
}

/**
 * Imports a CA private key for signing. Goes through node:crypto first so that a key in
 * another PEM flavour (e.g. SEC1 "BEGIN EC PRIVATE KEY" from openssl) is normalised to the
 * PKCS#8 that WebCrypto insists on, and so a non-P-256 key fails with a readable message.
 */
export async function importSigningKey(keyPem: string): Promise<CryptoKey> {
  const key = createPrivateKey(keyPem);
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType !== "ec" || curve !== "prime256v1") {
    throw new Error(`CA key must be ECDSA P-256, got ${key.asymmetricKeyType ?? "unknown"}${curve ? ` (${curve})` : ""}`);
  }
  const der = key.export({ type: "pkcs8", format: "der" });
  return webcrypto.subtle.importKey("pkcs8", der, KEY_ALGORITHM, false, ["sign"]);
}

/** PEM files conventionally end with a newline; concatenating PEMs relies on it. */
export function withTrailingNewline(pem: string): string {
  return pem.endsWith("\n") ? pem : `${pem}\n`;
}
