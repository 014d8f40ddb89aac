import { JetStreamApiError, type ConsumerConfig, type ConsumerInfo } from "@nats-io/jetstream";
import { nuid } from "@nats-io/nats-core";
import type { Substrate } from "./substrate.js";

/** How long one create request may go unanswered before it is tried again … */
export const CREATE_TIMEOUT_MS = 1_000;
/** … how often … */
export const CREATE_ATTEMPTS = 8;
/** … and how long the last attempt waits: as long as any JetStream request, for a server that is only slow. */
const LAST_ATTEMPT_TIMEOUT_MS = 5_000;

/**
 * Creates a memory-only, single-replica consumer for reading (a page reader, a recovery
 * scan, an object download), named `<prefix><nuid>`.
 *
 * On a JetStream cluster the server places such a consumer on one of the stream's peers,
 * and nats-server 2.9 may pick a peer that is down: the create request is then never
 * answered. Measured on 2.9.10 with one of three nodes killed: one create in three (the
 * stream leader's node killed) to one in two (a follower's) timed out, for as long as the
 * node stayed down. So a create that is not answered within CREATE_TIMEOUT_MS is sent again
 * under a new name (a new placement), up to CREATE_ATTEMPTS times (the last one waiting
 * longer); a consumer that was created after all is removed by its inactivity threshold.
 * An error answer (stream not found, …) is thrown at once, as nats.js would.
 *
 * A single server has no dead peer to avoid: there an unanswered create means a slow server,
 * which fast retries would only load with consumers it creates late. It gets one attempt with
 * the last attempt's timeout.
 */
export async function addReadConsumer(substrate: Substrate, stream: string, prefix: string, config: Partial<ConsumerConfig>): Promise<ConsumerInfo> {
  const clustered = substrate.nc.info?.cluster !== undefined;
  for (let attempt = clustered ? 1 : CREATE_ATTEMPTS; ; attempt++) {
    const name = `${prefix}${nuid.next()}`;
    try {
      const reply = await substrate.nc.request(
        `${substrate.apiPrefix}.CONSUMER.CREATE.${stream}.${name}`,
        JSON.stringify({ stream_name: stream, config: { ...config, name } }),
        { timeout: attempt < CREATE_ATTEMPTS ? CREATE_TIMEOUT_MS : LAST_ATTEMPT_TIMEOUT_MS },
      );
      const answer = reply.json<ConsumerInfo & { error?: { code: number; err_code: number; description: string } }>();
      if (answer.error) throw new JetStreamApiError(answer.error);
      return answer;
    } catch (err) {
      if (attempt >= CREATE_ATTEMPTS || !isTimeout(err)) throw err;
    }
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === "TimeoutError" || /timeout/i.test(err.message)) && !(err instanceof JetStreamApiError);
}
