export { startDeployable, main, type RunningDeployable } from "./run.js";
export { routesFor, type Role } from "./routes.js";
export type { BoundaryDeps } from "./deps.js";
