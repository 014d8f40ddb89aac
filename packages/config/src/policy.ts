import type { IdentityPolicy } from "./schema.js";

/** What the zone console asks of its viewer's policy (`console`): to see it, or to act from it. */
export type ConsoleAccess = "view" | "operate";

/** Why a call was refused; each is also a bsfg.v1 rejection reason (permission_denied). */
export type DenialReason = "unknown_identity" | "from_zone_not_allowed" | "to_zone_not_allowed" | "consumer_not_allowed" | "bucket_not_allowed" | "operator_not_allowed";

/** A quarantine operator verb (see the QuarantineService). */
export type QuarantineVerb = "read" | "release" | "drop";

/**
 * What a method needs of the caller's policy at the least, known from the method alone —
 * checked before a byte of the request is read: appending needs some from_zone to assert,
 * PutObject a bucket to write, FetchFacts and ConfirmReceipt a consumer, FetchObject and
 * StatObject a bucket to read, each quarantine verb that verb.
 */
export type CallVerb = "append" | "write_object" | "use_consumer" | "read_object" | `quarantine_${QuarantineVerb}`;

export type Decision =
  | { readonly allowed: true; readonly identity: string }
  | { readonly allowed: false; readonly identity: string; readonly reason: DenialReason; readonly message: string };

/**
 * Deny-by-default authorization. A caller is known by the names in its
 * certificate (CN first, then SANs); the first of them the policy lists is
 * its identity. Reachability is never authorization.
 */
export interface Policy {
  /** The policy identity among a certificate's names, if any. */
  identityOf(names: readonly string[]): string | undefined;
  mayAppend(names: readonly string[], fromZone: string, toZone: string): Decision;
  mayUseConsumer(names: readonly string[], consumer: string): Decision;
  mayWriteBucket(names: readonly string[], bucket: string): Decision;
  mayReadBucket(names: readonly string[], bucket: string): Decision;
  mayOperateQuarantine(names: readonly string[], verb: QuarantineVerb): Decision;
  /** The mTLS console: "view" is granted by either permission, "operate" only by operate. */
  mayUseConsole(names: readonly string[], access: ConsoleAccess): Decision;
  /** The coarse check made before a request is read (see CallVerb); the fine ones follow with the request. */
  mayCall(names: readonly string[], verb: CallVerb): Decision;
}

export function createPolicy(rules: Readonly<Record<string, IdentityPolicy>>): Policy {
  const identityOf = (names: readonly string[]) => names.find((name) => Object.hasOwn(rules, name));
  const decide = (names: readonly string[], check: (rule: IdentityPolicy, identity: string) => Decision): Decision => {
    const identity = identityOf(names);
    if (identity === undefined) {
      const shown = names.length > 0 ? names.join(", ") : "(no name)";
      return { allowed: false, identity: names[0] ?? "", reason: "unknown_identity", message: `certificate identity ${shown} has no policy in this zone` };
    }
    return check(rules[identity]!, identity);
  };
  const inList = (list: readonly string[], value: string) => list.includes("*") || list.includes(value);
  const allow = (identity: string): Decision => ({ allowed: true, identity });

  return {
    identityOf,
    mayAppend: (names, fromZone, toZone) => decide(names, (rule, identity) => {
      if (!inList(rule.assertFromZones, fromZone)) return { allowed: false, identity, reason: "from_zone_not_allowed", message: `${identity} may not assert from_zone "${fromZone}"` };
      if (!inList(rule.targetZones, toZone)) return { allowed: false, identity, reason: "to_zone_not_allowed", message: `${identity} may not target to_zone "${toZone}"` };
      return allow(identity);
    }),
    mayUseConsumer: (names, consumer) => decide(names, (rule, identity) =>
      rule.consumers.includes(consumer) ? allow(identity) : { allowed: false, identity, reason: "consumer_not_allowed", message: `${identity} is not bound to consumer "${consumer}"` }),
    mayWriteBucket: (names, bucket) => decide(names, (rule, identity) =>
      rule.writeBuckets.includes(bucket) ? allow(identity) : { allowed: false, identity, reason: "bucket_not_allowed", message: `${identity} may not write bucket "${bucket}"` }),
    mayReadBucket: (names, bucket) => decide(names, (rule, identity) =>
      rule.readBuckets.includes(bucket) ? allow(identity) : { allowed: false, identity, reason: "bucket_not_allowed", message: `${identity} may not read bucket "${bucket}"` }),
    mayCall: (names, verb) => decide(names, (rule, identity) => {
      // Refused with the reason the method's own check would give, so a caller sees one answer either way.
      const denied = (reason: DenialReason, what: string): Decision => ({ allowed: false, identity, reason, message: `${identity} may not ${what} here (its policy grants none)` });
      if (verb === "append") return rule.assertFromZones.length > 0 ? allow(identity) : denied("from_zone_not_allowed", "append facts");
      if (verb === "write_object") return rule.writeBuckets.length > 0 ? allow(identity) : denied("bucket_not_allowed", "write artifacts");
      if (verb === "use_consumer") return rule.consumers.length > 0 ? allow(identity) : denied("consumer_not_allowed", "fetch or confirm facts of any consumer");
      if (verb === "read_object") return rule.readBuckets.length > 0 ? allow(identity) : denied("bucket_not_allowed", "read artifacts");
      const quarantineVerb = verb.slice("quarantine_".length) as QuarantineVerb;
      return rule.quarantine.includes(quarantineVerb) ? allow(identity) : denied("operator_not_allowed", `${quarantineVerb} quarantined facts (policy: quarantine)`);
    }),
    mayUseConsole: (names, access) => decide(names, (rule, identity) =>
      rule.console === "operate" || (access === "view" && rule.console === "view")
        ? allow(identity)
        : { allowed: false, identity, reason: "operator_not_allowed", message: `${identity} may not ${access === "view" ? "see" : "act from"} the zone console (policy: console${access === "operate" ? ": operate" : ""})` }),
    mayOperateQuarantine: (names, verb) => decide(names, (rule, identity) =>
      rule.quarantine.includes(verb) ? allow(identity) : { allowed: false, identity, reason: "operator_not_allowed", message: `${identity} may not ${verb} quarantined facts (policy: quarantine)` }),
  };
}
