export { startNatsServer, disposeAllNatsServers } from "./nats-server.js";
export type { NatsServerOptions, NatsServerHandle } from "./nats-server.js";
export { startNatsCluster } from "./nats-cluster.js";
export type { NatsClusterOptions, NatsClusterHandle, NatsClusterNode } from "./nats-cluster.js";
export { startTcpProxy, disposeAllProxies } from "./tcp-proxy.js";
export type { TcpProxyOptions, TcpProxy, ProxyDirection } from "./tcp-proxy.js";
export { disposeAll } from "./dispose.js";
export { pollUntil } from "./poll.js";
export { freePort } from "./ports.js";
