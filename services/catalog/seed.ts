import type { Product } from "../../generated/ts/shop/catalog/v1/catalog";

/** The products the catalog starts with: a small, fixed shop so examples and tests can name them. */
export const SEED_PRODUCTS: readonly Product[] = [
  product("sku-1001", "Espresso beans 1 kg", "Dark roast, notes of cocoa", 2490, ["coffee", "beans"]),
  product("sku-1002", "Filter coffee 500 g", "Light roast for pour-over", 1290, ["coffee", "ground"]),
  product("sku-1003", "Green tea 100 g", "Sencha from Shizuoka", 890, ["tea", "green"]),
  product("sku-1004", "Black tea 250 g", "Assam breakfast blend", 750, ["tea", "black"]),
  product("sku-1005", "Pour-over dripper", "Ceramic, size 02", 2200, ["coffee", "brewing"]),
  product("sku-1006", "Paper filters x100", "Size 02, unbleached", 450, ["coffee", "brewing"]),
  product("sku-1007", "Burr grinder", "Hand grinder with steel burrs", 8900, ["coffee", "grinder"]),
  product("sku-1008", "Milk frother", "Battery powered whisk", 1590, ["coffee", "milk"]),
  product("sku-1009", "Teapot 1 l", "Cast iron with infuser", 4500, ["tea", "brewing"]),
  product("sku-1010", "Travel mug", "Insulated, 350 ml", 1990, ["mug"]),
  product("sku-1011", "Espresso cups x2", "Double-walled glass", 1490, ["coffee", "mug"]),
  product("sku-1012", "Matcha 30 g", "Ceremonial grade", 2490, ["tea", "green"]),
  product("sku-1013", "Chai spice mix", "Cardamom, cinnamon, ginger", 690, ["tea", "spice"]),
  product("sku-1014", "Cold brew bottle", "1 l with mesh filter", 2590, ["coffee", "brewing"]),
  product("sku-1015", "Descaler", "For espresso machines, 500 ml", 990, ["coffee", "care"]),
];

function product(id: string, name: string, description: string, priceCents: number, tags: string[]): Product {
  return { id, name, description, priceCents, currency: "EUR", tags };
}
