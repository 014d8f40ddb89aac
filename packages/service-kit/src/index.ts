export { startBoundaryServer, type BoundaryServer, type BoundaryServerOptions } from "./boundary-server.js";
export { peerOf, peerIdentityKey, type PeerIdentity } from "./peer-identity.js";
export { authorize } from "./authorize.js";
export { onStopSignal } from "./signals.js";
export { parseListen } from "./listen-address.js";
export { startProbeServer, type ProbeServer, type ProbeServerOptions } from "./probe-server.js";
export { metricsInterceptor, reasonLabel } from "./metrics-interceptor.js";
export type { MetricsEndpoint } from "./health.js";
