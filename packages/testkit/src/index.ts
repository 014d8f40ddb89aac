export { startNatsServer, disposeAllNatsServers } from "./nats-server.js";
export type { NatsServerOptions, NatsServerHandle } from "./nats-server.js";
export { pollUntil } from "./poll.js";
export { freePort } from "./ports.js";
