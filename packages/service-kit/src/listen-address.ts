/** Splits "host:port" (or "[v6]:port") as written in the zone configuration. */
export function parseListen(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address);
  if (!match) throw new Error(`"${address}" is not a host:port address`);
  return { host: match[1] ?? match[2]!, port: Number(match[3]) };
}

/** How clients reach a listening address: wildcard hosts become the loopback name. */
export function urlFor(scheme: "https" | "http", host: string, port: number): string {
  const reachable = host === "0.0.0.0" || host === "::" ? "localhost" : host;
  return `${scheme}://${reachable.includes(":") ? `[${reachable}]` : reachable}:${port}`;
}
