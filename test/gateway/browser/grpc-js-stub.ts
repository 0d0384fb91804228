/**
 * What the browser bundle gets for "@grpc/grpc-js" (esbuild's alias): the generated catalog module
 * makes its grpc-js client class at load time, which a page never uses; its codecs need nothing of grpc-js.
 */
export function makeGenericClientConstructor(): new () => object {
  return class BrowserUnusedClient {};
}
