/**
 * Where the reference services listen unless PORT says otherwise (under `protomesh up`, replica i
 * of a service listens on its port + 10·i). The control plane has 50050.
 */
export const CATALOG_DEFAULT_PORT = 50051;
export const ORDERS_DEFAULT_PORT = 50052;
