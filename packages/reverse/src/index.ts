export { startReverseDialer, type ReverseDialer, type ReverseDialerOptions, type ReverseTarget, type DialStatus, type DialState } from "./dialer.js";
export { startReverseListener, reverseBaseUrl, type ReverseListener, type ReverseListenerOptions, type ReverseConnection, type InboundPeer, type ReverseSessionManager } from "./listener.js";
export { HELLO_PATH, type ReverseRole, type Hello } from "./hello.js";
export type { Keepalive } from "./keepalive.js";
export type { ReverseLog } from "./log.js";
export { certificateIdentity, certificateNames, type CertificateIdentity } from "./identity.js";
