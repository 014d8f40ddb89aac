import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import type { Publisher } from "./publisher.js";

/** One zone's JetStream, as every part of this package reaches it. */
export interface Substrate {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  /** "$JS.<domain>.API": the zone's JetStream API, addressed by domain. */
  readonly apiPrefix: string;
  /** The pipelined publisher every write of the append path goes through. */
  readonly publisher: Publisher;
}
