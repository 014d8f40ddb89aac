import { BlockList, isIP } from "node:net";
import type { FastifyBaseLogger, FastifyReply, FastifyRequest } from "fastify";
import { Reason } from "@bsfg/proto";

const REFUSAL_LOG_INTERVAL_MS = 60_000;

/**
 * Who may read a plain-HTTP probe port (`health.allowFrom`): addresses and CIDR ranges. Left
 * out, the port answers whoever reaches it, which is what binding it to loopback or a
 * management network is for; set, it also holds where a port must listen on an interface that
 * others share (a container on several networks: docs/security.md, "Probe ports").
 */
export function probeAccess(allowFrom: readonly string[] | undefined, log: FastifyBaseLogger): ((request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) | undefined {
  if (allowFrom === undefined) return undefined;
  const allowed = new BlockList();
  for (const entry of allowFrom) {
    const [address, prefix] = entry.split("/") as [string, string | undefined];
    const family = isIP(address) === 6 ? "ipv6" : "ipv4";
    if (prefix === undefined) allowed.addAddress(address, family);
    else allowed.addSubnet(address, Number(prefix), family);
  }
  // One log line per address and minute, with how many refusals it stands for: a scraper
  // pointed at the wrong port must not flood the log.
  const lastLogged = new Map<string, { at: number; since: number }>();
  return async (request, reply) => {
    const remote = normalized(request.socket.remoteAddress ?? "");
    if (remote !== "" && allowed.check(remote, isIP(remote) === 6 ? "ipv6" : "ipv4")) return undefined;
    const now = performance.now();
    const seen = lastLogged.get(remote);
    if (seen && now - seen.at < REFUSAL_LOG_INTERVAL_MS) seen.since++;
    else {
      if (lastLogged.size >= 1_000) lastLogged.clear();
      lastLogged.set(remote, { at: now, since: 0 });
      log.warn({ event: "probe_refused", remote, path: request.url.slice(0, 200), refusedSinceLastLine: seen?.since ?? 0 }, `probe port: ${remote || "an unknown address"} is not in health.allowFrom`);
    }
    return reply.code(403).send({ code: "permission_denied", reason: Reason.ProbeNotAllowed, message: `${remote || "this address"} may not read this probe port (health.allowFrom)` });
  };
}

/** An IPv4 client of a dual-stack socket shows as ::ffff:a.b.c.d: the policy is written in IPv4. */
function normalized(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
