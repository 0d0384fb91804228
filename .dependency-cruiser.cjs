/**
 * The layers of protomesh and who may import whom (ARCHITECTURE.md, "Layout and layers"), checked
 * by `make lint`. A violation fails the run with the rule's name and the import that breaks it.
 *
 *   mesh/              the kit, a library        generated/ (protomesh.*, grpc.*, xds.*), npm packages
 *   mesh/controlplane/ the control plane         the kit
 *   services/          reference services        the kit's public entry (mesh/index.ts), generated/
 *   cli/               programs                  everything
 *   test/, bench/      not shipped               everything
 */
const KIT = "^mesh/(?!controlplane/)";

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "Import cycles make load order matter and hide a missing seam (STYLE.md).",
      from: {},
      to: { circular: true },
    },
    {
      name: "kit-imports-no-control-plane",
      severity: "error",
      comment: "The kit knows the control plane only over gRPC (the registry API), never by import.",
      from: { path: KIT },
      to: { path: "^mesh/controlplane/" },
    },
    {
      name: "kit-imports-no-programs-or-services",
      severity: "error",
      comment: "The kit is a library: programs and services build on it, not the other way round.",
      from: { path: "^mesh/" },
      to: { path: "^(cli|services)/" },
    },
    {
      name: "kit-uses-only-its-own-contracts",
      severity: "error",
      comment: "The kit and the control plane use the mesh's own contracts (protomesh.*, grpc.*, xds.* load reports), no service's.",
      from: { path: "^mesh/" },
      to: { path: "^generated/ts/(?!protomesh/|health/|xds/|google/|validate/)" },
    },
    {
      name: "services-use-the-kit-entry",
      severity: "error",
      comment: "A service imports the kit through mesh/index.ts only (and never the control plane).",
      from: { path: "^services/" },
      to: { path: "^mesh/", pathNot: "^mesh/index\\.ts$" },
    },
    {
      name: "services-import-no-programs",
      severity: "error",
      comment: "Services are started by programs; they never import them.",
      from: { path: "^services/" },
      to: { path: "^cli/" },
    },
    {
      name: "services-stay-in-their-folder",
      severity: "error",
      comment: "A service reaches another over gRPC, not by import; files at services/ itself are shared.",
      from: { path: "^services/([^/]+)/" },
      to: { path: "^services/[^/]+/", pathNot: "^services/$1/" },
    },
    {
      name: "shipped-code-imports-no-tests-or-benches",
      severity: "error",
      from: { path: "^(mesh|cli|services|generated)/" },
      to: { path: "^(test|bench)/" },
    },
    {
      name: "generated-is-a-leaf",
      severity: "error",
      comment: "generated/ is written by `make gen` and depends on nothing of ours.",
      from: { path: "^generated/" },
      to: { path: "^(mesh|cli|services|test|bench)/" },
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment: "An import that resolves to nothing is a typo or a missing dependency.",
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "^(dist|node_modules)/" },
    // Type-only imports count: a layer that needs another's types depends on it.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    enhancedResolveOptions: {
      extensions: [".ts", ".js", ".json"],
      // Resolve package "exports" subpaths (@bufbuild/protobuf/wire) as Node does for require.
      exportsFields: ["exports"],
      conditionNames: ["require", "node", "default", "types"],
    },
  },
};
