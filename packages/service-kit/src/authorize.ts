import type { Decision } from "@bsfg/config";
import { Code, rejection, type Reason } from "@bsfg/proto";

/** Turns a policy decision into a permission_denied rejection (logged by the rejection logger). */
export function authorize(decision: Decision, metadata: Record<string, string> = {}): string {
  if (decision.allowed) return decision.identity;
  throw rejection(Code.PermissionDenied, decision.reason as Reason, decision.message, { identity: decision.identity, ...metadata });
}
