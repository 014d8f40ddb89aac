// The single entry point to @peculiar/x509 for this package. Every module that needs the
// library imports it from here, never directly, because two things must happen first:
//
// 1. @peculiar/x509 wires its algorithm registry through tsyringe, which throws at load time
//    ("tsyringe requires a reflect polyfill") unless a Reflect metadata polyfill is installed.
//    ES modules evaluate their imports in source order, so importing "reflect-metadata" on the
//    line above the library is enough — no caller has to remember it.
// 2. The library signs and hashes through a pluggable WebCrypto provider. Node 20 has a
//    complete one (node:crypto webcrypto); registering it explicitly avoids relying on the
//    library's guess of `globalThis.crypto`.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { webcrypto } from "node:crypto";

x509.cryptoProvider.set(webcrypto);

export { x509, webcrypto };
