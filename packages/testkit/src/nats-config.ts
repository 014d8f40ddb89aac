export interface NatsConfigInput {
  port: number;
  monitorPort: number;
  serverName: string;
  domain: string;
  storeDir: string;
  maxMemoryStore: string | number;
  maxFileStore: string | number;
  extraConfig?: string | undefined;
  /** `jetstream { sync_interval }`: "always" (fsync before every acknowledgement) or a duration such as "2m"; default "always". */
  syncInterval?: string | undefined;
  /** A node of a JetStream cluster: its route listener on 127.0.0.1 and the other nodes' route ports. */
  cluster?: { name: string; port: number; routes: readonly number[] } | undefined;
  /** Clients log in as this user; anonymous connections are refused. */
  auth?: { user: string; password: string } | undefined;
  /** Clients must use TLS; the server's certificate and key files. */
  tls?: { certFile: string; keyFile: string } | undefined;
}

/**
 * JetStream domains end up as a subject token ($JS.<domain>.API.>), so dots,
 * wildcards and whitespace would silently break routing; reject them early.
 */
export function assertValidDomain(domain: string): void {
  if (!/^[A-Za-z0-9_-]+$/.test(domain)) {
    throw new Error(`Invalid JetStream domain ${JSON.stringify(domain)}: use only letters, digits, "-" and "_"`);
  }
}

/** Render a nats-server config file. Strings are JSON-quoted, which the NATS config parser accepts. */
export function renderNatsConfig(input: NatsConfigInput): string {
  const lines = [
    `listen: 127.0.0.1:${input.port}`,
    `http: 127.0.0.1:${input.monitorPort}`,
    `server_name: ${JSON.stringify(input.serverName)}`,
    ...(input.cluster === undefined
      ? []
      : [
          `cluster {`,
          `  name: ${JSON.stringify(input.cluster.name)}`,
          `  listen: 127.0.0.1:${input.cluster.port}`,
          `  routes: [${input.cluster.routes.map((port) => JSON.stringify(`nats-route://127.0.0.1:${port}`)).join(", ")}]`,
          `}`,
        ]),
    `jetstream {`,
    `  store_dir: ${JSON.stringify(input.storeDir)}`,
    `  domain: ${JSON.stringify(input.domain)}`,
    `  max_memory_store: ${sizeValue(input.maxMemoryStore)}`,
    `  max_file_store: ${sizeValue(input.maxFileStore)}`,
    `  sync_interval: ${syncIntervalValue(input.syncInterval ?? "always")}`,
    `}`,
  ];
  if (input.auth) lines.push(`authorization { user: ${JSON.stringify(input.auth.user)}, password: ${JSON.stringify(input.auth.password)} }`);
  if (input.tls) lines.push(`tls { cert_file: ${JSON.stringify(input.tls.certFile)}, key_file: ${JSON.stringify(input.tls.keyFile)} }`);
  if (input.extraConfig !== undefined && input.extraConfig !== "") lines.push(input.extraConfig);
  return `${lines.join("\n")}\n`;
}

function syncIntervalValue(value: string): string {
  if (value !== "always" && !/^\d+(ms|s|m|h)$/.test(value)) throw new Error(`Invalid sync_interval ${JSON.stringify(value)}: "always" or a duration like "2m"`);
  // Quoted: nats-server reads a bare "2m" as the number 2,000,000 (a size suffix), not two minutes.
  return value === "always" ? value : JSON.stringify(value);
}

function sizeValue(value: string | number): string {
  // Unquoted so nats-server parses units like "1GB"; numbers are plain bytes.
  if (typeof value === "number") return String(Math.trunc(value));
  if (!/^\d+\s*[KMGTkmgt]?[Bb]?$/.test(value)) throw new Error(`Invalid JetStream size ${JSON.stringify(value)}`);
  return value.replace(/\s+/g, "");
}
