#!/usr/bin/env node
import { run } from "./program.js";

// exitCode rather than process.exit(): pending stdout writes are flushed before the process ends.
process.exitCode = await run(process.argv);
