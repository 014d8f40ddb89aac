import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { FactMessageSchema } from "@bsfg/proto";
import { artifactRefOf } from "./artifact-copy.js";

const digest = `sha256:${"a".repeat(64)}`;
const fact = (mediaType: string, object: unknown) => create(FactMessageSchema, {
  envelope: { messageId: "m1", fromZone: "plant-a", toZone: "enterprise", objectMediaType: mediaType },
  fact: { subject: "document:PlantA/R1", predicate: "report_released", objectJson: JSON.stringify(object) },
});

describe("artifactRefOf", () => {
  it("reads the artifact a fact references", () => {
    expect(artifactRefOf(fact("application/pdf", { bucket: "document-files", key: "r/1.pdf", digest, size: 12, media_type: "application/pdf", file_name: "1.pdf" })))
      .toEqual({ bucket: "document-files", key: "r/1.pdf", digest, size: 12, mediaType: "application/pdf", fileName: "1.pdf" });
  });

  it("finds none in a fact without object_media_type, even if its object looks like a reference", () => {
    expect(artifactRefOf(fact("", { bucket: "document-files", key: "r/1.pdf", digest, size: 12 }))).toBeUndefined();
  });
});
