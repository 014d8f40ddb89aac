import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** What a relaying zone needs to know of a fact to route and admit it, read from its bytes. */
export interface FactHead {
  readonly messageId: string;
  readonly fromZone: string;
  readonly toZone: string;
  /** Set when the fact references an artifact (its object then names it). */
  readonly objectMediaType: string;
  /** "kind:id": the kind is the fact's subject token in a zone's log. */
  readonly subject: string;
}

/**
 * The envelope fields and the fact subject of a serialized FactMessage, without
 * decoding its payload or labels: a relayed page is appended as fetched, so
 * decoding all of it (and encoding it again) would be work for nothing.
 * Throws when the bytes are not a FactMessage.
 */
export function factHeadOf(factMessage: Uint8Array): FactHead {
  let messageId = "", fromZone = "", toZone = "", objectMediaType = "", subject = "";
  const message = new BinaryReader(factMessage);
  while (message.pos < message.len) {
    const [no, wireType] = message.tag();
    if (no === 1 && wireType === WireType.LengthDelimited) {
      const envelope = new BinaryReader(message.bytes());
      while (envelope.pos < envelope.len) {
        const [field, type] = envelope.tag();
        if (type !== WireType.LengthDelimited) envelope.skip(type, field);
        else if (field === 1) messageId = envelope.string();
        else if (field === 2) fromZone = envelope.string();
        else if (field === 3) toZone = envelope.string();
        else if (field === 8) objectMediaType = envelope.string();
        else envelope.skip(type, field);
      }
    } else if (no === 2 && wireType === WireType.LengthDelimited) {
      const fact = new BinaryReader(message.bytes());
      while (fact.pos < fact.len) {
        const [field, type] = fact.tag();
        if (field === 1 && type === WireType.LengthDelimited) subject = fact.string();
        else fact.skip(type, field);
      }
    } else message.skip(wireType, no);
  }
  return { messageId, fromZone, toZone, objectMediaType, subject };
}
