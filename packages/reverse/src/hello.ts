/*
 * The first call on a reversed connection. The dialing zone serves HTTP/2 on a
 * connection it opened; the zone it dialed is the HTTP/2 client there, and asks
 * first who it is talking to: which zone, which replica, and which verbs it
 * serves (egress: FetchFacts, FetchObject, StatObject; ledger: ConfirmReceipt).
 * The zone's identity itself comes from its TLS certificate, never from here.
 */

/** GET on this path answers a `Hello` as JSON. */
export const HELLO_PATH = "/bsfg.reverse.v1/hello";

/** The verbs a dialing deployable serves: an egress, a ledger, or the all-in-one (both). */
export type ReverseRole = "egress" | "ledger";

export interface Hello {
  readonly zone: string;
  /** The dialing replica, for link status and logs. */
  readonly replica: string;
  readonly roles: readonly ReverseRole[];
}

const ROLES: readonly string[] = ["egress", "ledger"];

/** The hello a dialer sent, checked; throws with what is wrong. */
export function parseHello(text: string): Hello {
  const value = JSON.parse(text) as Partial<Hello>;
  if (typeof value.zone !== "string" || value.zone === "") throw new Error("hello without a zone");
  if (typeof value.replica !== "string") throw new Error("hello without a replica");
  if (!Array.isArray(value.roles) || value.roles.length === 0 || !value.roles.every((r) => ROLES.includes(r))) {
    throw new Error(`hello with roles ${JSON.stringify(value.roles)}: expected some of ${ROLES.join(", ")}`);
  }
  return { zone: value.zone, replica: value.replica, roles: value.roles };
}
