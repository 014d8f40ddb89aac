import type { NatsConnection } from "@nats-io/nats-core";

/**
 * A request that was in flight when the connection to nats-server dropped waits
 * in nats.js until its timeout: the server that would have answered is gone (a
 * killed server, a cluster node that went down), and the client reconnects in
 * 250 ms. Likewise a write sent to a replicated stream whose leader died: it is
 * lost, and the stream answers again only once its followers have elected a new
 * leader (nats-server waits 4–9 s before it holds that election). The writes and
 * pulls of this package race their answer against either event — the connection's
 * next disconnect, or a stream of the account electing a leader — so
 * that an outcome that is not known is reported as soon as asking again can work,
 * and handled as a timeout is (read back, then retry), instead of holding a link
 * or an append for the full 5–10 s.
 */
export class ConnectionLost extends Error {
  constructor(what: string) {
    super(`${what}: the connection to nats-server was lost, or the stream's leader changed, before the answer came; the outcome is not known`);
    this.name = "ConnectionLost";
  }
}

const watchers = new WeakMap<NatsConnection, Set<() => void>>();

/**
 * A stream of the account elected a leader: whoever waited on the old one waits in vain.
 * (Not consumers: every consumer a cluster creates elects one, and readers come and go.)
 */
const LEADER_ELECTED = "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.>";

/** Calls `onLoss` once, at the connection's next disconnect or leader election; returns a function that stops watching. */
export function onConnectionLoss(nc: NatsConnection, onLoss: () => void): () => void {
  let listeners = watchers.get(nc);
  if (!listeners) {
    const created = new Set<() => void>();
    watchers.set(nc, created);
    const lost = () => {
      for (const listener of [...created]) listener();
    };
    void (async () => {
      for await (const status of nc.status()) if (status.type === "disconnect") lost();
    })();
    nc.subscribe(LEADER_ELECTED, { callback: lost });
    listeners = created;
  }
  const set = listeners;
  const once = () => {
    set.delete(once);
    onLoss();
  };
  set.add(once);
  return () => set.delete(once);
}

/** `answer`, unless the connection drops first: then a `ConnectionLost` (the outcome is not known). */
export function unlessConnectionLost<T>(nc: NatsConnection, answer: Promise<T>, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const stop = onConnectionLoss(nc, () => reject(new ConnectionLost(what)));
    answer.then(
      (value) => {
        stop();
        resolve(value);
      },
      (err: unknown) => {
        stop();
        reject(err as Error);
      },
    );
  });
}
