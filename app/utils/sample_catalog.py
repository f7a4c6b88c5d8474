"""A realistic sample catalog for a small German grocery / convenience shop.

Used by ``lanpos demo`` and tests. Deterministic: barcodes are built from the
German GS1 prefix range (400-440) with :func:`make_ean13`, no randomness, so
every node of a demo cluster seeds the identical catalog.

Tax (German VAT): 7 % (700 bp) for food and for printed newspapers and
magazines (reduced rate under German law), 19 % (1900 bp) for everything else,
including drinks other than milk (water, juice, soft drinks, beer).
A few products have only 1 or 2 units so sell-out and oversell are easy to demo;
none starts at 0.
"""

from __future__ import annotations

from app.utils.barcode import make_ean13

REDUCED_BP = 700
STANDARD_BP = 1900

# category -> (sku prefix, tax rate bp, [(name, price_cents, stock), ...])
_CATALOG_SPEC: dict[str, tuple[str, int, list[tuple[str, int, int]]]] = {
    "Bakery": (
        "BAK",
        REDUCED_BP,
        [
            ("Bread roll (Brötchen)", 35, 120),
            ("Pretzel (Brezel)", 85, 60),
            ("Wholemeal bread 500 g", 289, 18),
            ("Rye bread 750 g", 349, 14),
            ("Croissant", 119, 40),
            ("Toast bread 500 g", 149, 25),
            ("Apple turnover", 139, 12),
            ("Poppy seed roll", 55, 80),
            ("Cinnamon bun", 189, 2),
        ],
    ),
    "Dairy": (
        "DAI",
        REDUCED_BP,
        [
            ("Whole milk 3.5% 1 l", 119, 48),
            ("Semi-skimmed milk 1.5% 1 l", 109, 36),
            ("Butter 250 g", 229, 30),
            ("Natural yoghurt 500 g", 89, 24),
            ("Quark 250 g", 79, 20),
            ("Gouda slices 200 g", 199, 22),
            ("Free-range eggs, 10", 349, 30),
            ("Cream 200 ml", 99, 16),
            ("Camembert 125 g", 169, 1),
        ],
    ),
    "Drinks": (
        "DRK",
        STANDARD_BP,
        [
            ("Still mineral water 1.5 l", 59, 96),
            ("Sparkling mineral water 1.5 l", 59, 96),
            ("Cola 1.5 l", 159, 60),
            ("Orange juice 1 l", 199, 30),
            ("Apple spritzer 0.5 l", 119, 48),
            ("Energy drink 250 ml", 149, 36),
            ("Iced tea peach 1.5 l", 129, 24),
            ("Pilsner beer 0.5 l", 99, 72),
            ("Alcohol-free wheat beer 0.5 l", 119, 24),
        ],
    ),
    "Fruit & Veg": (
        "FRV",
        REDUCED_BP,
        [
            ("Bananas, bunch approx. 1 kg", 199, 20),
            ("Apples Elstar 1 kg", 279, 25),
            ("Tomatoes 500 g", 199, 18),
            ("Cucumber", 69, 30),
            ("Potatoes 2.5 kg", 349, 15),
            ("Onions 1 kg", 129, 20),
            ("Carrots 1 kg", 119, 22),
            ("Lemons, net of 4", 149, 16),
            ("Avocado, ripe", 129, 2),
        ],
    ),
    "Snacks": (
        "SNK",
        REDUCED_BP,
        [
            ("Milk chocolate bar 100 g", 119, 60),
            ("Dark chocolate 70% 100 g", 169, 30),
            ("Paprika crisps 175 g", 199, 40),
            ("Salted pretzel sticks 250 g", 99, 35),
            ("Gummy bears 200 g", 129, 50),
            ("Salted peanuts 200 g", 179, 25),
            ("Butter biscuits 200 g", 149, 28),
            ("Muesli bar, 6 pack", 229, 20),
            ("Praline selection 200 g", 899, 1),
        ],
    ),
    "Pantry": (
        "PAN",
        REDUCED_BP,
        [
            ("Spaghetti 500 g", 119, 40),
            ("Long-grain rice 1 kg", 199, 24),
            ("Wheat flour type 405 1 kg", 89, 30),
            ("Sugar 1 kg", 109, 30),
            ("Ground coffee 500 g", 649, 20),
            ("Black tea, 25 bags", 179, 18),
            ("Sunflower oil 1 l", 249, 15),
            ("Chopped tomatoes 400 g", 79, 36),
            ("Extra virgin olive oil 750 ml", 1099, 2),
        ],
    ),
    "Household": (
        "HOU",
        STANDARD_BP,
        [
            ("Toilet paper, 8 rolls", 449, 30),
            ("Kitchen roll, 2 rolls", 249, 24),
            ("Washing-up liquid 500 ml", 129, 20),
            ("Laundry detergent 1.35 l", 599, 12),
            ("Bin bags 35 l, 20", 189, 18),
            ("AA batteries, 4 pack", 499, 15),
            ("Tea lights, 50", 299, 10),
            ("Sponge cloths, 3", 149, 20),
            ("Lighter", 99, 40),
        ],
    ),
    "Personal care": (
        "PER",
        STANDARD_BP,
        [
            ("Toothpaste 75 ml", 145, 24),
            ("Toothbrush medium", 179, 20),
            ("Shower gel 250 ml", 195, 20),
            ("Shampoo 300 ml", 295, 15),
            ("Deodorant spray 150 ml", 249, 18),
            ("Paper tissues, 10 packs", 139, 40),
            ("Hand cream 100 ml", 225, 12),
            ("Plasters, 20", 199, 10),
            ("Razor blades, 4", 1299, 2),
        ],
    ),
    "Newspapers & magazines": (
        "NEW",
        REDUCED_BP,
        [
            ("Daily newspaper (local)", 230, 20),
            ("National daily newspaper", 290, 15),
            ("Tabloid daily", 120, 25),
            ("Weekly news magazine", 650, 8),
            ("TV guide (2 weeks)", 230, 10),
            ("Puzzle magazine", 199, 12),
            ("Cooking magazine", 450, 6),
            ("Football weekly", 380, 6),
            ("Computer magazine", 599, 1),
        ],
    ),
}


def _build() -> tuple[list[dict], list[str]]:
    catalog: list[dict] = []
    for ci, (category, (prefix, rate, products)) in enumerate(_CATALOG_SPEC.items()):
        country = 400 + ci * 4  # 400, 404, ... 432: German GS1 prefixes
        company = 4711 + ci * 263  # one made-up manufacturer per category
        for pi, (name, price, stock) in enumerate(products, start=1):
            item = 10000 + pi * 137
            catalog.append(
                {
                    "sku": f"{prefix}-{pi:03d}",
                    "name": name,
                    "category": category,
                    "price_cents": price,
                    "tax_rate_bp": rate,
                    "barcode": make_ean13(f"{country:03d}{company:04d}{item:05d}"),
                    "stock": stock,
                }
            )
    return catalog, list(_CATALOG_SPEC)


# Plain dicts; deep-copy before mutating (they are shared module state).
SAMPLE_CATALOG: list[dict]
SAMPLE_CATEGORIES: list[str]
SAMPLE_CATALOG, SAMPLE_CATEGORIES = _build()
