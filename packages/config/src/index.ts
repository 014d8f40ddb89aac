export { loadZoneConfig, parseZoneConfig, printableConfig, ConfigError, type ZoneConfig, type PeerLink } from "./zone-config.js";
export { createPolicy, type Policy, type Decision, type DenialReason, type QuarantineVerb, type CallVerb, type ConsoleAccess } from "./policy.js";
export { zoneConfigSchema, type ZoneConfigInput, type IdentityPolicy, type PeerConfig, type ServedPeerConfig, type LinkConfig } from "./schema.js";
export { configFromCommandLine } from "./command-line.js";
