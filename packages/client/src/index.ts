export { createBsfgClient, type BsfgClient, type BsfgClientOptions, type QuarantineClient, type FactMessageInit, type FetchOptions, type ObjectHeaderInit, type ObjectContent, type SessionManager } from "./client.js";
export { isRetryable, type RetryOptions } from "./retry.js";
