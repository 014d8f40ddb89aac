export { openZoneStore, type ZoneStore, type OpenOptions, type AppendOptions } from "./zone-store.js";
export {
  parseStorageConfig,
  storageConfigSchema,
  zoneName,
  type StorageConfig,
  type StorageConfigInput,
  type ConsumerDefinition,
  type StreamDefinition,
} from "./config.js";
export type { FactPage, PageLimits } from "./read-facts.js";
export type { ObjectHeaderInput, ObjectReader } from "./artifacts.js";
export type { Leases, LeaseGrant } from "./leases.js";
export type { LinkControl, LinkControls, ReadLinkControl } from "./link-controls.js";
export { factStreamName, factSubject } from "./routing.js";
export {
  readLinkPosition,
  shipPage,
  linkMarkerSubject,
  isLinkMarker,
  LinkFenced,
  ShipmentRefused,
  MAX_FACTS_PER_SHIPMENT,
  type LinkPosition,
  type ShippedFact,
  type ShipRequest,
} from "./shipping.js";
export type { Substrate } from "./substrate.js";
export { messageDigest } from "./stored-fact-wire.js";
export { canonicalize, canonicalizeJsonText, CanonicalJsonError } from "./canonical-json.js";
export { payloadIdentity } from "./identity.js";
export { publisher, type Publisher, type Ack } from "./publisher.js";
export { durationMs, byteSize } from "./units.js";
export {
  park,
  transition,
  listQuarantine,
  getQuarantined,
  summarizeQuarantine,
  historyOf,
  QuarantineEntryMoved,
  QUARANTINE_STREAM,
  type QuarantineEntry,
  type QuarantineState,
  type QuarantineSummary,
  type QuarantineRecord,
  type SetAsideRecord,
  type Parked,
  type Transition,
} from "./quarantine.js";
export { releaseQuarantined, dropQuarantined, requireQuarantined, RELEASED_FROM_HEADER, RELEASE_RESUME_AFTER_MS, type Released, type ActionOptions } from "./quarantine-actions.js";
