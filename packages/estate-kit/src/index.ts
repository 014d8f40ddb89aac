export { threeZoneEstate, referenceEstate, estateEdges, estateLinks, estateIdentities, zoneIdentity, type EstateTopology, type EstateLink } from "./topology.js";
export { estateDocuments, type ZoneEndpoints, type DocumentOptions, type Endpoints } from "./documents.js";
export { startTestEstate, type TestEstate, type TestEstateOptions, type TestZone, type SyncReplica, type HaZoneOptions, type HaTestZone, type ServiceReplica, type ClientOptions, type ChildTestZone } from "./harness.js";
export { substrateLogin, NATS_SERVER_IDENTITY, type SubstrateLogin } from "./substrate-login.js";
