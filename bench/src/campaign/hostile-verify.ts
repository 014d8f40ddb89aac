import { clone, toBinary } from "@bufbuild/protobuf";
import { AppendStatus, FactMessageSchema, type AppendResult, type FactMessage, type StoredFact } from "@bsfg/proto";
import { canonicalizeJsonText, type ZoneStore } from "@bsfg/storage";

/*
 * "Silent data changes": the campaign remembers what it was told about every AppendFact
 * it made (acknowledged at an offset, refused, or no answer), and afterwards reads the
 * zone's whole log. Every fact there must be one the zone acknowledged, byte for byte as
 * the campaign sent it (object_json in RFC 8785 form, the one rewrite the protocol
 * promises); nothing refused may be there; nothing acknowledged may be missing.
 */

/** What the log check found; each must be 0. */
export interface LogVerdict {
  readonly factsInLog: number;
  /** Acknowledged at (stream, offset), but the log holds other bytes there. */
  readonly altered: number;
  /** A fact whose every request was answered with an error. */
  readonly refusedButStored: number;
  /** A fact nobody appended as far as the campaign knows. */
  readonly unexpected: number;
  /** Acknowledged, but not in the log. */
  readonly lost: number;
  /**
   * Acknowledged with text that is not well-formed Unicode (a lone surrogate from a JSON
   * body): protobuf cannot carry it, so what the zone stored is not what was sent.
   */
  readonly illFormedAcknowledged: number;
  /** A few examples, for the log. */
  readonly examples: string[];
}

export const silentChanges = (v: LogVerdict) => v.altered + v.refusedButStored + v.unexpected + v.lost + v.illFormedAcknowledged;

/** The bytes the zone must store for `message`: its protobuf encoding with canonical object_json. */
export function storedForm(message: FactMessage): Uint8Array {
  const copy = clone(FactMessageSchema, message);
  if (copy.fact) {
    try {
      copy.fact.objectJson = canonicalizeJsonText(copy.fact.objectJson);
    } catch {
      // Not canonicalizable: the zone should have refused it; compared as sent.
    }
  }
  return toBinary(FactMessageSchema, copy);
}

const idOf = (m: FactMessage | undefined) => m?.envelope?.messageId ?? "";

/** Every text of the message is well-formed UTF-16 (no lone surrogate), so UTF-8 carries it exactly. */
function wellFormed(m: FactMessage): boolean {
  const e = m.envelope;
  const f = m.fact;
  const texts = [
    e?.messageId, e?.fromZone, e?.toZone, e?.correlationId, e?.causationId, e?.objectMediaType, e?.objectSchema,
    ...Object.entries(e?.labels ?? {}).flat(), f?.subject, f?.predicate, f?.objectJson,
  ];
  return texts.every((t) => t === undefined || t.isWellFormed());
}
const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b);

export class LogExpectations {
  /** `${stream}:${offset}` → the stored form of the message acknowledged APPENDED there. */
  private readonly acknowledgedAt = new Map<string, { bytes: Uint8Array; id: string }>();
  /** message_id → stored forms of requests whose outcome is unknown (reset, timeout). */
  private readonly maybe = new Map<string, Uint8Array[]>();
  /** message_ids of requests answered with an error. */
  private readonly refused = new Set<string>();
  private illFormed = 0;

  /** An AppendFact the zone answered ok: its results, in request order. */
  acknowledged(messages: readonly FactMessage[], results: readonly AppendResult[]): void {
    results.forEach((result, i) => {
      const message = messages[i];
      if (!message || result.status !== AppendStatus.APPENDED) return;
      if (!wellFormed(message)) this.illFormed++;
      this.acknowledgedAt.set(`${result.stream}:${result.offset}`, { bytes: storedForm(message), id: idOf(message) });
    });
  }

  /** An AppendFact the zone answered with an error: none of it may be stored. */
  refusedMessages(messages: readonly FactMessage[]): void {
    for (const m of messages) this.refused.add(idOf(m));
  }

  /** An AppendFact without an answer: it may or may not be stored, but only as sent. */
  unknownOutcome(messages: readonly FactMessage[]): void {
    for (const m of messages) {
      const list = this.maybe.get(idOf(m)) ?? [];
      list.push(storedForm(m));
      this.maybe.set(idOf(m), list);
    }
  }

  get acknowledgedCount(): number {
    return this.acknowledgedAt.size;
  }

  async verify(store: ZoneStore, streams: readonly string[]): Promise<LogVerdict> {
    let factsInLog = 0;
    let altered = 0;
    let refusedButStored = 0;
    let unexpected = 0;
    const examples: string[] = [];
    const note = (line: string) => examples.length < 10 && examples.push(line);
    const seen = new Set<string>();
    for (const stream of streams) {
      for (const fact of await readAll(store, stream)) {
        factsInLog++;
        const key = `${stream}:${fact.offset}`;
        const id = idOf(fact.message);
        const bytes = fact.message ? toBinary(FactMessageSchema, fact.message) : new Uint8Array();
        const expected = this.acknowledgedAt.get(key);
        if (expected) {
          seen.add(key);
          if (!same(bytes, expected.bytes)) {
            altered++;
            note(`altered at ${key}: ${id.slice(0, 80)}`);
          }
        } else if (this.maybe.get(id)?.some((candidate) => same(bytes, candidate))) {
          // A request without an answer that did land, as sent: allowed.
        } else if (this.refused.has(id)) {
          refusedButStored++;
          note(`refused but stored at ${key}: ${id.slice(0, 80)}`);
        } else {
          unexpected++;
          note(`unexpected at ${key}: ${id.slice(0, 80)}`);
        }
      }
    }
    const lost = [...this.acknowledgedAt.keys()].filter((key) => !seen.has(key));
    for (const key of lost.slice(0, 3)) note(`acknowledged but missing at ${key}`);
    if (this.illFormed > 0) note(`${this.illFormed} facts acknowledged whose text holds a lone surrogate`);
    return { factsInLog, altered, refusedButStored, unexpected, lost: lost.length, illFormedAcknowledged: this.illFormed, examples };
  }
}

/** Every fact of one stream category, in offset order. */
async function readAll(store: ZoneStore, stream: string): Promise<StoredFact[]> {
  const facts: StoredFact[] = [];
  let after = 0;
  for (;;) {
    const page = await store.read({ stream, skipOrigins: [] }, after, { limit: 1_000, maxBytes: 8 * 2 ** 20 });
    facts.push(...page.facts);
    if (page.lastOffset <= after) return facts;
    after = page.lastOffset;
  }
}
