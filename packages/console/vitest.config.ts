import { packageTestConfig } from "../../vitest.package.ts";

export default packageTestConfig();
