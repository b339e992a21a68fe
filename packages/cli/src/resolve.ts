/**
 * Names and id prefixes wherever the CLI takes an id: a full id goes through untouched (the
 * gateway answers for it); anything else is matched against the listing, and must match one.
 */
import { CliError, EXIT } from "./errors.js";

const FULL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MIN_PREFIX = 4;

export interface Candidate {
  id: string;
  /** Names this item also answers to (e.g. "hello" and "hello/v2" for a deployment). */
  names?: string[];
}

/**
 * The id `ref` stands for among `candidates` (fetched only when `ref` is not a full id): an exact
 * name first (`pick` chooses among several items of one name, e.g. the latest version), else a
 * unique id prefix of at least 4 characters.
 */
export async function resolveRef<T extends Candidate>(
  kind: string, ref: string, candidates: () => Promise<T[]>, pick: (named: T[]) => T | undefined = (named) => (named.length === 1 ? named[0] : undefined),
): Promise<string> {
  if (FULL_ID.test(ref)) return ref;
  const all = await candidates();
  const named = all.filter((c) => c.names?.includes(ref));
  if (named.length > 0) {
    const chosen = pick(named);
    if (!chosen) throw new CliError("AMBIGUOUS", `${ref} names ${named.length} ${kind}s; use one of their ids: ${named.map((c) => c.id).join(", ")}`, EXIT.usage);
    return chosen.id;
  }
  const byPrefix = ref.length >= MIN_PREFIX ? all.filter((c) => c.id.startsWith(ref.toLowerCase())) : [];
  if (byPrefix.length === 1) return byPrefix[0]!.id;
  if (byPrefix.length > 1) {
    throw new CliError("AMBIGUOUS", `${ref} is the start of ${byPrefix.length} ${kind} ids (${byPrefix.slice(0, 5).map((c) => c.id).join(", ")}…); type more of it`, EXIT.usage);
  }
  throw new CliError("RESOURCE_NOT_FOUND", `no ${kind} ${ref}: give its id, a unique start of it${kind === "deployment" ? ", its name or NAME/vN" : ""} (see beta9 ${kind} list)`, EXIT.notFound);
}
