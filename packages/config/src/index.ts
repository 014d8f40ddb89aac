export { loadZoneConfig, parseZoneConfig, printableConfig, ConfigError, type ZoneConfig } from "./zone-config.js";
export { createPolicy, type Policy, type Decision, type DenialReason } from "./policy.js";
export { zoneConfigSchema, type ZoneConfigInput, type IdentityPolicy } from "./schema.js";
