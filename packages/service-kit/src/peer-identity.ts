import type { TLSSocket } from "node:tls";
import { createContextKey, type HandlerContext } from "@connectrpc/connect";
import { Code, Reason, rejection } from "@bsfg/proto";
import { certificateIdentity } from "@bsfg/reverse";

/** Who is calling, as its client certificate says. */
export interface PeerIdentity {
  /** Subject common name. */
  readonly cn: string;
  /** DNS subject alternative names. */
  readonly sans: readonly string[];
  /** CN first, then SANs: the names the policy looks up, in that order. */
  readonly names: readonly string[];
}

export const peerIdentityKey = createContextKey<PeerIdentity | undefined>(undefined, { description: "bsfg peer identity" });

const bySocket = new WeakMap<TLSSocket, PeerIdentity>();

/** The identity of the TLS socket's verified client certificate (parsed once per connection). */
export function identityOfSocket(socket: TLSSocket | undefined): PeerIdentity | undefined {
  if (!socket || typeof socket.getPeerCertificate !== "function") return undefined;
  const cached = bySocket.get(socket);
  if (cached) return cached;
  if (!socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return undefined;
  const identity: PeerIdentity = certificateIdentity(cert);
  bySocket.set(socket, identity);
  return identity;
}

/** The caller of a handler; unauthenticated if the transport gave none (which mTLS should prevent). */
export function peerOf(ctx: HandlerContext): PeerIdentity {
  const peer = ctx.values.get(peerIdentityKey);
  if (!peer) throw rejection(Code.Unauthenticated, Reason.NoClientCertificate, "a verified client certificate is required");
  return peer;
}
