/** b9agent: joins this machine to a beta9-ts gateway (see main.ts). */
export {};
