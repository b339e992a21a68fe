/**
 * A serve session's stub (`beta9 serve`): exactly one container, whatever the demand, so every
 * call reaches the one process the developer watches (and its code reloads in place).
 */
import type { ScalingPolicy } from "./policy.js";

export const pinned: ScalingPolicy = () => 1;
