// Where the reference services listen unless PORT says otherwise; under `protomesh up`, replica i
// of a service listens on its port + 10·i. The control plane has 50050.

/** The catalog's port. */
export const CATALOG_DEFAULT_PORT = 50051;
/** The orders service's port. */
export const ORDERS_DEFAULT_PORT = 50052;
/** The inventory's port (services/inventory, Go). */
export const INVENTORY_DEFAULT_PORT = 50053;
/** The pricing service's port (services/pricing, Python). */
export const PRICING_DEFAULT_PORT = 50054;
