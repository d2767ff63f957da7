"""The vocabulary the catalogue generator draws from: 5 categories, 30 product types.

Each product type gives the fields the original's scraped products carry: the search ``query`` that found it, a
breadcrumb ``product_category`` ("A › B › C"), title phrases, an attribute pool (short lowercase phrases, as in
the original's ``Attributes``), option pools per option name, and a price range. ``nouns`` lists the words a
part-of-speech tagger would call nouns in the title phrases (the type reward compares title nouns).
Option values are chosen so that buying the target with exactly the goal's options scores 1.0 under the
original's colour normalisation (e.g. no "peppermint", which normalises to "mint"); a test checks this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BRAND_SYLLABLES", "CATEGORIES", "PRODUCT_TYPES", "ProductType"]

CATEGORIES = ("beauty", "electronics", "fashion", "furniture", "grocery")


@dataclass(frozen=True)
class ProductType:
    category: str
    query: str
    breadcrumb: tuple[str, ...]
    phrases: tuple[str, ...]  # title phrases (Title Case)
    nouns: frozenset[str]  # lowercase noun tokens of the phrases
    instruction_phrases: tuple[str, ...]  # "a face moisturizer", "hair extensions"
    attributes: tuple[str, ...]
    options: dict[str, tuple[str, ...]] = field(default_factory=dict)
    price: tuple[float, float] = (10.0, 50.0)
    details: tuple[str, ...] = ()  # sentences for bullets and descriptions


def _t(
    category: str,
    query: str,
    breadcrumb: str,
    phrases: str,
    nouns: str,
    instruction: str,
    attributes: str,
    options: dict[str, str],
    price: tuple[float, float],
    details: str,
) -> ProductType:
    """Compact constructor: lists are "|"-separated strings."""
    return ProductType(
        category=category,
        query=query,
        breadcrumb=tuple(part.strip() for part in breadcrumb.split("\u203a")),
        phrases=tuple(phrases.split("|")),
        nouns=frozenset(nouns.split()),
        instruction_phrases=tuple(instruction.split("|")),
        attributes=tuple(attributes.split("|")),
        options={name: tuple(values.split("|")) for name, values in options.items()},
        price=price,
        details=tuple(details.split("|")),
    )


BEAUTY = "Beauty & Personal Care"
ELECTRONICS = "Electronics"
FASHION = "Clothing, Shoes & Jewelry"
HOME = "Home & Kitchen"
GROCERY = "Grocery & Gourmet Food"

PRODUCT_TYPES: tuple[ProductType, ...] = (
    # ---- beauty
    _t(
        "beauty",
        "hair extensions",
        f"{BEAUTY} › Hair Care › Hair Extensions, Wigs & Accessories › Extensions",
        "Clip in Hair Extensions|Human Hair Extensions|Tape in Hair Extensions",
        "hair extensions extension",
        "hair extensions|a hair extension set",
        "natural looking|easy to apply|long lasting|heat resistant|human hair|tangle free|high quality",
        {"color": "black|dark brown|light brown|blonde|auburn|ash blonde", "size": "14 inch|18 inch|22 inch"},
        (18.0, 120.0),
        "blends seamlessly with your own hair|can be curled and straightened|"
        "comes with secure clips|soft and smooth to the touch|suitable for daily wear",
    ),
    _t(
        "beauty",
        "face moisturizer",
        f"{BEAUTY} › Skin Care › Face › Creams & Moisturizers",
        "Face Moisturizer|Daily Face Cream|Hydrating Face Lotion",
        "face moisturizer cream lotion",
        "a face moisturizer|a face cream",
        "fragrance free|for sensitive skin|hyaluronic acid|non greasy|paraben free|anti aging|cruelty free",
        {"size": "1.7 fl oz|2.5 fl oz|3.4 fl oz"},
        (9.0, 60.0),
        "absorbs quickly without residue|keeps skin hydrated all day|works under makeup|"
        "gentle enough for everyday use|leaves skin soft and smooth",
    ),
    _t(
        "beauty",
        "matte lipstick",
        f"{BEAUTY} › Makeup › Lips › Lipstick",
        "Matte Lipstick|Liquid Lipstick|Velvet Lip Stain",
        "lipstick lip stain",
        "a lipstick|a matte lipstick",
        "long lasting|waterproof|cruelty free|highly pigmented|vegan|transfer proof|moisturizing",
        {"color": "ruby red|nude pink|berry|coral|plum|mauve", "size": "single|pack of 3"},
        (6.0, 32.0),
        "glides on smoothly in one stroke|rich color payoff|does not dry out lips|comfortable all day wear|"
        "precise applicator for sharp lines",
    ),
    _t(
        "beauty",
        "shampoo",
        f"{BEAUTY} › Hair Care › Shampoo & Conditioner › Shampoos",
        "Shampoo|Moisturizing Shampoo|Clarifying Shampoo",
        "shampoo",
        "a shampoo|a bottle of shampoo",
        "sulfate free|for dry hair|color safe|paraben free|natural ingredients|tea tree|for men",
        {"size": "8 fl oz|12 fl oz|16 fl oz|32 fl oz", "scent": "coconut|tea tree|lavender|unscented|citrus"},
        (7.0, 40.0),
        "cleans without stripping natural oils|rich lather|adds shine and volume|"
        "safe for color treated hair|fresh and clean scent",
    ),
    _t(
        "beauty",
        "nail polish",
        f"{BEAUTY} › Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
        "Nail Polish|Gel Nail Polish|Nail Polish Set",
        "nail polish set",
        "a nail polish|a gel nail polish",
        "quick dry|non toxic|long lasting|high gloss|chip resistant|vegan",
        {"color": "classic red|baby pink|midnight blue|nude|glitter silver|coral"},
        (5.0, 28.0),
        "salon quality finish at home|smooth and even application|dries in minutes|no harsh chemicals|"
        "brilliant shine for days",
    ),
    _t(
        "beauty",
        "makeup brush set",
        f"{BEAUTY} › Tools & Accessories › Makeup Brushes & Tools › Brush Sets",
        "Makeup Brush Set|Foundation Brush Set|Professional Makeup Brushes",
        "makeup brush set brushes foundation",
        "a makeup brush set|makeup brushes",
        "synthetic bristles|travel size|easy to clean|cruelty free|soft bristles|with storage case",
        {"color": "black|rose gold|pink|white", "size": "5 pieces|10 pieces|15 pieces"},
        (8.0, 45.0),
        "blends powder and cream products|dense and soft brush heads|ergonomic handles|"
        "no shedding after washing|perfect gift for makeup lovers",
    ),
    # ---- electronics
    _t(
        "electronics",
        "wireless earbuds",
        f"{ELECTRONICS} › Headphones, Earbuds & Accessories › Headphones & Earbuds › Earbud Headphones",
        "Wireless Earbuds|Bluetooth Earbuds|True Wireless Earbuds",
        "earbuds bluetooth",
        "wireless earbuds",
        "noise cancelling|long battery life|water resistant|bluetooth 5.0|with charging case|hands free|fast charging",
        {"color": "black|white|navy blue|rose gold"},
        (19.0, 160.0),
        "stable connection with one step pairing|crystal clear calls|comfortable secure fit|"
        "touch controls for music and calls|compact charging case",
    ),
    _t(
        "electronics",
        "phone case",
        f"{ELECTRONICS} › Cell Phones & Accessories › Cases, Holsters & Sleeves › Basic Cases",
        "Phone Case|Protective Phone Case|Slim Phone Case",
        "phone case",
        "a phone case|a protective phone case",
        "shockproof|slim fit|wireless charging compatible|drop protection|anti scratch|clear back",
        {"color": "black|clear|purple|navy blue|red", "style": "iphone 13|iphone 14|iphone 15|galaxy s23"},
        (6.0, 35.0),
        "raised edges protect screen and camera|precise cutouts for all ports|"
        "easy to install and remove|grippy texture|lightweight design",
    ),
    _t(
        "electronics",
        "usb c cable",
        f"{ELECTRONICS} › Computers & Accessories › Computer Accessories & Peripherals › Cables & Interconnects"
        " › USB Cables",
        "USB C Cable|Fast Charging Cable|Braided USB C Charger Cable",
        "usb cable charger",
        "a usb c cable|a charging cable",
        "fast charging|nylon braided|durable|data transfer|tangle free|high speed",
        {"size": "3 ft|6 ft|10 ft", "color": "black|white|grey"},
        (5.0, 25.0),
        "tested for thousands of bends|reinforced connectors|supports quick charge|"
        "compatible with most usb c devices|syncs data quickly",
    ),
    _t(
        "electronics",
        "bluetooth speaker",
        f"{ELECTRONICS} › Portable Audio & Video › Portable Speakers & Docks › Portable Bluetooth Speakers",
        "Bluetooth Speaker|Portable Speaker|Waterproof Bluetooth Speaker",
        "speaker bluetooth",
        "a bluetooth speaker|a portable speaker",
        "waterproof|portable|loud sound|long battery life|deep bass|built in microphone",
        {"color": "black|blue|red|camo|teal"},
        (15.0, 150.0),
        "rich stereo sound|pairs two speakers together|perfect for outdoor parties|"
        "hours of playtime on one charge|rugged build",
    ),
    _t(
        "electronics",
        "laptop stand",
        f"{ELECTRONICS} › Computers & Accessories › Laptop Accessories › Stands",
        "Laptop Stand|Adjustable Laptop Stand|Aluminum Laptop Riser",
        "laptop stand riser aluminum",
        "a laptop stand|a laptop riser",
        "adjustable height|aluminum alloy|foldable|ergonomic|non slip|heat dissipation",
        {"color": "silver|space gray|black"},
        (14.0, 70.0),
        "raises your screen to eye level|fits laptops from 10 to 17 inches|improves posture|"
        "stable and sturdy base|folds flat for travel",
    ),
    _t(
        "electronics",
        "micro sd card",
        f"{ELECTRONICS} › Computers & Accessories › Memory Cards › Micro SD Cards",
        "Micro SD Card|MicroSDXC Memory Card|Memory Card",
        "micro sd card memory microsdxc",
        "a micro sd card|a memory card",
        "high speed|with adapter|4k video|waterproof|class 10",
        {"capacity": "32gb|64gb|128gb|256gb", "size": "1 pack|2 pack|3 pack"},
        (7.0, 60.0),
        "fast read speeds for quick transfers|ideal for phones tablets and cameras|"
        "records full hd video|shock and temperature proof|reliable storage",
    ),
    # ---- fashion
    _t(
        "fashion",
        "men t-shirt",
        f"{FASHION} › Men › Clothing › Shirts › T-Shirts",
        "T-Shirt for Men|Men's Crew Neck T-Shirt|Short Sleeve Tee",
        "shirt men neck sleeve tee crew",
        "a t-shirt for men|a men's t-shirt",
        "machine washable|cotton|short sleeve|slim fit|moisture wicking|classic fit|crew neck",
        {"color": "black|white|heather grey|navy|olive green|burgundy", "size": "small|medium|large|x-large|xx-large"},
        (8.0, 35.0),
        "soft breathable fabric|tag free for comfort|keeps its shape after washing|"
        "great for layering|everyday essential",
    ),
    _t(
        "fashion",
        "women dress",
        f"{FASHION} › Women › Clothing › Dresses › Casual",
        "Summer Dress for Women|Women's Maxi Dress|Casual Midi Dress",
        "dress women summer",
        "a dress for women|a summer dress",
        "floral print|short sleeve|v neck|with pockets|machine washable|flowy|high waist",
        {"color": "black|floral blue|wine red|pink|green", "size": "small|medium|large|x-large"},
        (18.0, 60.0),
        "lightweight and comfortable|perfect for beach and vacation|flattering silhouette|"
        "easy to dress up or down|soft fabric that drapes well",
    ),
    _t(
        "fashion",
        "men running shoes",
        f"{FASHION} › Men › Shoes › Athletic › Running",
        "Running Shoes for Men|Men's Running Sneakers|Lightweight Trail Running Shoes",
        "shoes sneakers men trail",
        "running shoes for men|men's running sneakers",
        "lightweight|breathable|non slip|rubber sole|arch support|memory foam",
        {"color": "black|white|grey|navy blue|black white", "size": "7|8|8.5|9|10|11|12"},
        (25.0, 110.0),
        "cushioned midsole absorbs impact|grippy outsole for all surfaces|secure lace up fit|"
        "breathable knit upper|great for gym and walking",
    ),
    _t(
        "fashion",
        "women leggings",
        f"{FASHION} › Women › Clothing › Active › Leggings",
        "Yoga Leggings for Women|High Waisted Leggings|Workout Leggings",
        "leggings yoga women workout",
        "leggings for women|yoga leggings",
        "high waist|tummy control|squat proof|moisture wicking|with pockets|four way stretch",
        {"color": "black|charcoal|navy|wine|olive", "size": "x-small|small|medium|large|x-large"},
        (12.0, 40.0),
        "buttery soft fabric|stays in place during workouts|flattering fit|"
        "ideal for yoga running and lounging|no see through",
    ),
    _t(
        "fashion",
        "winter beanie",
        f"{FASHION} › Men › Accessories › Hats & Caps › Skullies & Beanies",
        "Winter Beanie Hat|Knit Beanie|Cuffed Beanie for Men",
        "beanie hat winter men",
        "a winter beanie|a knit hat",
        "warm|soft knit|one size|fleece lined|unisex|stretchy",
        {"color": "black|grey|burgundy|navy|cream"},
        (6.0, 25.0),
        "keeps your head and ears warm|thick double layer knit|fits most adults|"
        "classic cuffed design|great for skiing and outdoor activities",
    ),
    _t(
        "fashion",
        "men watch",
        f"{FASHION} › Men › Watches › Wrist Watches",
        "Analog Wrist Watch|Men's Quartz Watch|Stainless Steel Watch",
        "watch men steel quartz",
        "a wrist watch for men|a men's watch",
        "water resistant|stainless steel|quartz movement|leather strap|minimalist|luminous hands",
        {"color": "silver|black|gold|rose gold|blue"},
        (25.0, 180.0),
        "accurate japanese movement|scratch resistant glass|easy to read dial|"
        "adjustable band fits most wrists|comes in a gift box",
    ),
    # ---- furniture
    _t(
        "furniture",
        "office chair",
        f"{HOME} › Furniture › Home Office Furniture › Home Office Chairs › Desk Chairs",
        "Office Chair|Ergonomic Desk Chair|Mesh Office Chair",
        "office chair desk mesh",
        "an office chair|a desk chair",
        "lumbar support|adjustable height|ergonomic|swivel|breathable mesh|easy assembly|padded armrests",
        {"color": "black|grey|white|blue"},
        (45.0, 260.0),
        "smooth rolling casters|supports up to 250 pounds|comfortable for long hours|"
        "tilt and lock mechanism|all tools included",
    ),
    _t(
        "furniture",
        "bookshelf",
        f"{HOME} › Furniture › Living Room Furniture › Bookcases",
        "Bookshelf|Tier Bookcase|Industrial Bookshelf",
        "bookshelf bookcase tier",
        "a bookshelf|a bookcase",
        "easy assembly|solid wood|space saving|sturdy|industrial style|open storage",
        {"color": "rustic brown|white|black|walnut", "size": "3 tier|4 tier|5 tier"},
        (35.0, 180.0),
        "holds books plants and decor|anti tip hardware included|stable metal frame|"
        "fits living room bedroom and office|wipe clean surface",
    ),
    _t(
        "furniture",
        "bed frame",
        f"{HOME} › Furniture › Bedroom Furniture › Beds, Frames & Bases › Bed Frames",
        "Metal Bed Frame|Platform Bed Frame|Upholstered Bed Frame",
        "bed frame platform metal",
        "a bed frame|a platform bed frame",
        "no box spring needed|easy assembly|noise free|under bed storage|heavy duty|wood slats",
        {"size": "twin|full|queen|king", "color": "black|grey|white"},
        (80.0, 400.0),
        "strong steel support|quiet and stable|plenty of space underneath|"
        "tool free assembly in minutes|supports memory foam mattresses",
    ),
    _t(
        "furniture",
        "coffee table",
        f"{HOME} › Furniture › Living Room Furniture › Tables › Coffee Tables",
        "Coffee Table|Round Coffee Table|Lift Top Coffee Table",
        "coffee table top",
        "a coffee table|a living room table",
        "storage shelf|mid century modern|easy assembly|solid wood|for living room|rustic",
        {"color": "walnut|black|white|oak"},
        (40.0, 250.0),
        "spacious tabletop for drinks and snacks|hidden storage compartment|water resistant finish|"
        "sturdy legs|complements any decor",
    ),
    _t(
        "furniture",
        "tv stand",
        f"{HOME} › Furniture › Living Room Furniture › TV & Media Furniture"
        " › Television Stands & Entertainment Centers",
        "TV Stand|Entertainment Center|Media Console",
        "tv stand entertainment center media console",
        "a tv stand|an entertainment center",
        "storage cabinet|cable management|easy assembly|modern|led lights|for living room",
        {"color": "black|white|natural oak|espresso", "size": "55 inch|65 inch|75 inch"},
        (60.0, 320.0),
        "holds game consoles and streaming boxes|adjustable shelves|tidy cable holes|"
        "supports large televisions|sleek modern look",
    ),
    _t(
        "furniture",
        "bar stools",
        f"{HOME} › Furniture › Game & Recreation Room Furniture › Home Bar Furniture › Barstools",
        "Bar Stools|Counter Height Bar Stools|Swivel Bar Stool",
        "bar stools stool counter height",
        "bar stools|counter height stools",
        "set of 2|swivel|with back|adjustable height|faux leather|footrest",
        {"color": "black|grey|brown|white"},
        (50.0, 220.0),
        "gas lift adjusts seat height|comfortable padded seat|protective floor glides|"
        "perfect for kitchen island|easy to wipe clean",
    ),
    # ---- grocery
    _t(
        "grocery",
        "whole bean coffee",
        f"{GROCERY} › Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
        "Whole Bean Coffee|Medium Roast Coffee Beans|Dark Roast Whole Bean Coffee",
        "bean coffee beans roast",
        "whole bean coffee|coffee beans",
        "medium roast|dark roast|organic|fair trade|single origin|low acid|arabica",
        {"size": "12 ounce|2 pound|5 pound", "flavor name": "original|vanilla|hazelnut|french roast"},
        (9.0, 55.0),
        "roasted in small batches|smooth and rich flavor|notes of cocoa and nuts|"
        "freshly packed to lock in aroma|great for espresso or drip",
    ),
    _t(
        "grocery",
        "protein bars",
        f"{GROCERY} › Snack Foods › Bars › Protein Bars",
        "Protein Bars|High Protein Snack Bars|Keto Protein Bar",
        "protein bars bar snack",
        "protein bars|high protein snack bars",
        "gluten free|low sugar|high protein|keto friendly|non gmo|plant based",
        {
            "flavor name": "chocolate chip|peanut butter|cookie dough|salted caramel|birthday cake",
            "size": "12 count|15 count|pack of 24",
        },
        (12.0, 45.0),
        "great taste without the guilt|perfect post workout snack|made with real ingredients|"
        "individually wrapped for on the go|satisfies sweet cravings",
    ),
    _t(
        "grocery",
        "olive oil",
        f"{GROCERY} › Pantry Staples › Cooking & Baking › Oils, Vinegars & Salad Dressings › Oils › Olive Oils",
        "Extra Virgin Olive Oil|Olive Oil|Cold Pressed Olive Oil",
        "olive oil",
        "olive oil|a bottle of olive oil",
        "cold pressed|extra virgin|organic|non gmo|product of italy|first harvest",
        {"size": "16.9 fl oz|25.3 fl oz|33.8 fl oz|1 gallon"},
        (8.0, 50.0),
        "fruity and peppery taste|ideal for salads and cooking|rich in antioxidants|"
        "packed in dark glass bottles|harvested and bottled at the source",
    ),
    _t(
        "grocery",
        "herbal tea",
        f"{GROCERY} › Beverages › Coffee, Tea & Cocoa › Tea › Herbal",
        "Herbal Tea|Organic Herbal Tea Bags|Relaxing Herbal Tea",
        "tea bags",
        "herbal tea|herbal tea bags",
        "caffeine free|organic|non gmo|individually wrapped|kosher|gluten free",
        {"flavor name": "chamomile|ginger lemon|hibiscus|rooibos|honey vanilla", "size": "20 count|40 count|100 count"},
        (5.0, 30.0),
        "soothing blend for evenings|brews a fragrant cup|no artificial flavors|compostable tea bags|enjoy hot or iced",
    ),
    _t(
        "grocery",
        "mixed nuts",
        f"{GROCERY} › Snack Foods › Nuts & Seeds › Mixed Nuts",
        "Mixed Nuts|Roasted Almonds|Deluxe Mixed Nuts",
        "nuts almonds",
        "mixed nuts|a bag of mixed nuts",
        "lightly salted|unsalted|roasted|resealable bag|high protein|vegan|kosher",
        {"size": "8 ounce|16 ounce|2 pound"},
        (6.0, 35.0),
        "crunchy and satisfying|a healthy snack for work or travel|packed with protein and fiber|"
        "stays fresh in a resealable bag|premium quality nuts",
    ),
    _t(
        "grocery",
        "dark chocolate",
        f"{GROCERY} › Candy & Chocolate › Chocolate › Chocolate Bars",
        "Dark Chocolate Bar|Chocolate Bars|Dark Chocolate Squares",
        "chocolate bar bars squares",
        "dark chocolate|a dark chocolate bar",
        "72% cacao|sugar free|fair trade|organic|dairy free|individually wrapped",
        {"flavor name": "sea salt|almond|orange|mint|raspberry", "size": "pack of 4|pack of 12"},
        (4.0, 30.0),
        "smooth and intense flavor|ethically sourced cocoa|melts in your mouth|"
        "a perfect treat to share|made with simple ingredients",
    ),
)

# Syllables of made-up brand names (proper nouns in titles).
BRAND_SYLLABLES = (
    "ve",
    "lo",
    "ra",
    "nor",
    "dix",
    "ka",
    "mi",
    "zen",
    "to",
    "lu",
    "mar",
    "ix",
    "qua",
    "sol",
    "via",
    "tek",
    "bri",
    "ona",
    "pex",
    "ly",
    "fa",
    "ber",
    "co",
    "dar",
    "el",
    "fin",
    "gro",
    "hal",
    "jo",
    "kel",
    "lin",
    "mo",
    "nex",
    "pri",
    "sen",
    "tal",
    "ur",
    "vor",
    "wex",
    "yan",
)
