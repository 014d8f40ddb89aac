export { threeZoneEstate, estateLinks, estateIdentities, zoneIdentity, type EstateTopology, type EstateLink } from "./topology.js";
export { estateDocuments, type ZoneEndpoints, type DocumentOptions } from "./documents.js";
export { startTestEstate, type TestEstate, type TestEstateOptions, type TestZone, type SyncReplica } from "./harness.js";
