"""TravelAPI: flights, credit cards and insurance; one seeded random stream feeds every generated id."""

# Method and argument names are BFCL's own (camelCase included): models call them by these names.
# ruff: noqa: N803

from __future__ import annotations

import copy
import random
from datetime import datetime
from typing import Any, ClassVar

from tools.bfcl.base import Backend, filler

__all__ = ["TravelAPI"]

# Base fares in USD, one "FROM TO fare" per entry, in BFCL's table order (long-context cost lists follow it).
_ROUTE_TABLE = """
SFO LAX 200, SFO JFK 500, SFO ORD 400, SFO BOS 450, SFO RMS 300, SFO SBK 350, SFO MPC 370, SFO SVP 320,
SFO SHD 330, SFO SSV 340, SFO OKD 360, SFO WLB 310, SFO CRH 380, SFO ATV 390, SFO PHV 420, SFO GFD 430,
SFO CIA 700, LAX SFO 100, LAX JFK 600, LAX ORD 500, LAX BOS 550, LAX RMS 310, LAX SBK 320, LAX MPC 330,
LAX SVP 340, LAX SHD 350, LAX SSV 360, LAX OKD 370, LAX WLB 380, LAX CRH 390, LAX ATV 400, LAX PHV 410,
LAX GFD 420, LAX HND 430, JFK ORD 300, JFK BOS 250, JFK RMS 450, JFK SBK 460, JFK MPC 470, JFK SVP 480,
JFK SHD 490, JFK SSV 500, JFK OKD 510, JFK WLB 520, JFK CRH 530, JFK ATV 540, JFK PHV 550, JFK GFD 560,
JFK LAX 570, JFK HND 800, JFK PVG 950, JFK PEK 1000, ORD LAX 180, ORD BOS 200, ORD RMS 350, ORD SBK 360,
ORD MPC 370, ORD SVP 380, ORD SHD 390, ORD SSV 400, ORD OKD 410, ORD WLB 420, ORD CRH 430, ORD ATV 440,
ORD PHV 450, ORD GFD 460, BOS RMS 400, BOS SBK 410, BOS MPC 420, BOS SVP 430, BOS SHD 440, BOS SSV 450,
BOS OKD 460, BOS WLB 470, BOS CRH 480, BOS ATV 490, BOS PHV 500, BOS GFD 510, RMS BOS 200, RMS JFK 210,
RMS SBK 220, RMS MPC 230, RMS SVP 240, RMS SHD 250, RMS SSV 260, RMS OKD 270, RMS WLB 280, RMS CRH 290,
RMS ATV 300, RMS PHV 310, RMS GFD 320, RMS LAX 330, SBK MPC 200, SBK SVP 210, SBK SHD 220, SBK SSV 230,
SBK OKD 240, SBK WLB 250, SBK CRH 260, SBK ATV 270, SBK PHV 280, SBK GFD 290, MPC SVP 210, MPC SHD 220,
MPC SSV 230, MPC OKD 240, MPC WLB 250, MPC CRH 260, MPC ATV 270, MPC PHV 280, MPC GFD 290, SVP SHD 230,
SVP SSV 240, SVP OKD 250, SVP WLB 260, SVP CRH 270, SVP ATV 280, SVP PHV 290, SVP GFD 300, SHD SSV 220,
SHD OKD 230, SHD WLB 240, SHD CRH 250, SHD ATV 260, SHD PHV 270, SHD GFD 280, SSV OKD 240, SSV WLB 250,
SSV CRH 260, SSV ATV 270, SSV PHV 280, SSV GFD 290, OKD WLB 230, OKD CRH 240, OKD ATV 250, OKD PHV 260,
OKD GFD 270, WLB CRH 250, WLB ATV 260, WLB PHV 270, WLB GFD 280, CRH ATV 240, CRH PHV 250, CRH GFD 260,
CRH SFO 270, CRH RMS 280, CRH HKG 290, CRH JFK 300, ATV PHV 230, ATV GFD 240, PHV GFD 220, LHR CDG 100,
OKD LAX 220
"""
ROUTES: dict[tuple[str, str], int] = {
    (entry.split()[0], entry.split()[1]): int(entry.split()[2])
    for entry in _ROUTE_TABLE.replace("\n", " ").split(",")
    if entry.strip()
}
AIRPORTS = [
    "RMS",
    "SBK",
    "MPC",
    "SVP",
    "SHD",
    "CDG",
    "LHR",
    "SSV",
    "OKD",
    "WLB",
    "PEK",
    "HND",
    "HKG",
    "CIA",
    "CRH",
    "ATV",
    "PHV",
    "GFD",
    "SFO",
    "LAX",
    "JFK",
    "ORD",
    "BOS",
]
CITY_AIRPORTS = {
    "Rivermist": "RMS",
    "Stonebrook": "SBK",
    "Maplecrest": "MPC",
    "Silverpine": "SVP",
    "Shadowridge": "SHD",
    "London": "LHR",
    "Paris": "CDG",
    "Sunset Valley": "SSV",
    "Oakendale": "OKD",
    "Willowbend": "WLB",
    "Crescent Hollow": "CRH",
    "Autumnville": "ATV",
    "Pinehaven": "PHV",
    "Greenfield": "GFD",
    "San Francisco": "SFO",
    "Los Angeles": "LAX",
    "New York": "JFK",
    "Chicago": "ORD",
    "Boston": "BOS",
    "Beijing": "PEK",
    "Hong Kong": "HKG",
    "Rome": "CIA",
    "Tokyo": "HND",
}
USD_RATES = {
    "RMB": 7,
    "EUR": 0.8,
    "JPY": 110,
    "GBP": 0.7,
    "CAD": 1.3,
    "AUD": 1.4,
    "INR": 70,
    "RUB": 60,
    "BRL": 3.8,
    "MXN": 20,
}
_CLASS_FACTOR = {"economy": 1, "business": 2, "first": 5}


class TravelAPI(Backend):
    doc_file = "travel_booking"
    defaults: ClassVar[dict[str, Any]] = {
        "credit_card_list": {},
        "booking_record": {},
        "access_token": None,
        "token_type": None,
        "token_expires_in": None,
        "token_scope": None,
        "user_first_name": None,
        "user_last_name": None,
        "budget_limit": None,
    }

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self._random = random.Random(config.get("random_seed", 141053))
        for key in self.defaults:
            setattr(self, key, self._get(config, key))
        self.long_context = long_context
        if long_context:
            for key, extra in (
                ("credit_card_list", "credit_card_extension"),
                ("booking_record", "booking_record_extension"),
            ):
                records = getattr(self, key)
                for record_id, record in filler(extra).items():
                    records.setdefault(record_id, record)

    def _token_error(self, access_token: str) -> str | None:
        if self.token_expires_in == 0:
            return "Token expired"
        if access_token != self.access_token:
            return "Invalid access token"
        return None

    def authenticate_travel(
        self,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        grant_type: str,
        user_first_name: str,
        user_last_name: str,
    ) -> dict[str, Any]:
        self.token_expires_in = 2
        self.access_token = str(self._random.randint(100000, 999999))
        self.token_type = "Bearer"
        self.token_scope = grant_type
        self.user_first_name = user_first_name
        self.user_last_name = user_last_name
        return {"expires_in": 2, "access_token": self.access_token, "token_type": "Bearer", "scope": grant_type}

    def travel_get_login_status(self) -> dict[str, bool]:
        return {"status": not (self.token_expires_in is None or self.token_expires_in == 0)}

    def get_budget_fiscal_year(
        self,
        lastModifiedAfter: str | None = None,
        includeRemoved: str | None = None,
    ) -> dict[str, str]:
        return {"budget_fiscal_year": "2018"}

    def register_credit_card(
        self,
        access_token: str,
        card_number: str,
        expiration_date: str,
        cardholder_name: str,
        card_verification_number: int,
    ) -> dict[str, Any]:
        if self.token_expires_in is None:
            return {"error": "Token not initialized"}
        if error := self._token_error(access_token):
            return {"error": error}
        if card_number in self.credit_card_list:
            return {"error": "Card already registered"}
        card_id = str(self._random.randint(100000000000, 999999999999))
        self.credit_card_list[card_id] = {
            "card_number": card_number,
            "expiration_date": expiration_date,
            "cardholder_name": cardholder_name,
            "card_verification_number": card_verification_number,
            "balance": self._random.randint(10000, 99999),
        }
        return {"card_id": card_id}

    def _cost(
        self, travel_from: str, travel_to: str, travel_date: str, travel_class: str, base: int | None = None
    ) -> float:
        digit_sum = sum(int(char) for char in travel_date if char.isdigit())
        fare = ROUTES[(travel_from, travel_to)] if base is None else base
        return float(fare * _CLASS_FACTOR[travel_class] * (2 if digit_sum % 2 == 0 else 1))

    def get_flight_cost(
        self, travel_from: str, travel_to: str, travel_date: str, travel_class: str
    ) -> dict[str, list[float]]:
        if (travel_from, travel_to) not in ROUTES:
            raise ValueError("No available route for the given airports.")
        if travel_class not in _CLASS_FACTOR:
            raise ValueError("Invalid travel class. Options are: economy, business, first.")
        if self.long_context:
            costs = [self._cost(a, b, travel_date, travel_class, fare) for (a, b), fare in ROUTES.items()]
            return {"travel_cost_list": costs}
        return {"travel_cost_list": [self._cost(travel_from, travel_to, travel_date, travel_class)]}

    def get_credit_card_balance(self, access_token: str, card_id: str) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"error": error}
        if card_id not in self.credit_card_list:
            return {"error": f"Card not registered. Here are a list of card_id's: {list(self.credit_card_list)}"}
        return {"card_balance": self.credit_card_list[card_id]["balance"]}

    def book_flight(
        self, access_token: str, card_id: str, travel_date: str, travel_from: str, travel_to: str, travel_class: str
    ) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"booking_status": False, "error": error}
        if card_id not in self.credit_card_list:
            return {"booking_status": False, "error": "Card not registered"}
        card = self.credit_card_list[card_id]
        if "balance" not in card:
            return {"booking_status": False, "error": "Balance not found"}
        if travel_from not in AIRPORTS:
            return {"booking_status": False, "error": f"Invalid departure airport code: {travel_from}"}
        if travel_to not in AIRPORTS:
            return {"booking_status": False, "error": f"Invalid destination airport code: {travel_to}"}
        try:
            datetime.strptime(travel_date, "%Y-%m-%d")
        except ValueError:
            return {"booking_status": False, "error": "Invalid date format. Use YYYY-MM-DD."}
        if travel_class not in _CLASS_FACTOR:
            classes = {"economy", "business", "first"}
            return {"booking_status": False, "error": f"Invalid travel class. Must be one of {classes}"}
        if (travel_from, travel_to) not in ROUTES:
            return {"booking_status": False, "error": "No available route for the given airports."}
        cost = self._cost(travel_from, travel_to, travel_date, travel_class)
        if card["balance"] < cost:
            return {"booking_status": False, "error": "Insufficient funds"}
        if self.budget_limit is not None and card["balance"] < self.budget_limit:
            return {"booking_status": False, "error": "Balance is less than budget limit"}
        card["balance"] -= cost
        booking_id = str(self._random.randint(1000000, 9999999))
        transaction_id = str(self._random.randint(10000000, 99999999))
        self.booking_record[booking_id] = {
            "card_id": card_id,
            "travel_date": travel_date,
            "travel_from": travel_from,
            "travel_to": travel_to,
            "travel_class": travel_class,
            "travel_cost": cost,
            "transaction_id": transaction_id,
        }
        history = self.booking_record if self.long_context else {}
        return {
            "booking_id": booking_id,
            "transaction_id": transaction_id,
            "booking_status": True,
            "booking_history": history,
        }

    def retrieve_invoice(
        self, access_token: str, booking_id: str | None = None, insurance_id: str | None = None
    ) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"error": error}
        if booking_id not in self.booking_record:
            return {"error": "Booking not found"}
        record = self.booking_record[booking_id]
        invoice = {"booking_id": booking_id}
        for key in ("travel_date", "travel_from", "travel_to", "travel_class", "travel_cost", "transaction_id"):
            invoice[key] = record[key]
        return {"invoice": invoice}

    def get_booking_history(self, access_token: str) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"error": error}
        return {"booking_history": copy.deepcopy(self.booking_record)}

    def list_all_airports(self) -> list[str]:
        return list(AIRPORTS)

    def cancel_booking(self, access_token: str, booking_id: str) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"cancel_status": False, "error": error}
        if booking_id not in self.booking_record:
            return {"cancel_status": False, "error": "Booking not found"}
        record = self.booking_record[booking_id]
        self.credit_card_list[record["card_id"]]["balance"] += record["travel_cost"]
        del self.booking_record[booking_id]
        return {"cancel_status": True}

    def compute_exchange_rate(self, base_currency: str, target_currency: str, value: float) -> dict[str, float]:
        for currency, rate in USD_RATES.items():
            if (base_currency, target_currency) == ("USD", currency):
                return {"exchanged_value": float(value * rate)}
            if (base_currency, target_currency) == (currency, "USD"):
                return {"exchanged_value": round(value / rate, 2)}
        raise ValueError("No available exchange rate for the given currencies.")

    def verify_traveler_information(
        self, first_name: str, last_name: str, date_of_birth: str, passport_number: str
    ) -> dict[str, Any]:
        if self.user_first_name != first_name or self.user_last_name != last_name:
            return {
                "verification_status": False,
                "verification_failure": "Cannot book flight information for another user."
                f"Expected {self.user_first_name} {self.user_last_name}, got {first_name} {last_name}",
            }
        try:
            born = datetime.strptime(date_of_birth, "%Y-%m-%d")
        except ValueError:
            return {
                "verification_status": False,
                "verification_failure": "Invalid date of birth format. Please use YYYY-MM-DD.",
            }
        today = datetime.today()
        age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        if age < 18:
            return {"verification_status": False, "verification_failure": "Traveler must be at least 18 years old."}
        if not passport_number.startswith("US"):
            return {
                "verification_status": False,
                "verification_failure": "Passport must be issued by the United States.",
            }
        return {"verification_status": True}

    def set_budget_limit(self, access_token: str, budget_limit: float) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"error": error}
        self.budget_limit = float(budget_limit)
        return {"budget_limit": self.budget_limit}

    def get_nearest_airport_by_city(self, location: str) -> dict[str, str]:
        return {"nearest_airport": CITY_AIRPORTS.get(location, "Unknown")}

    def purchase_insurance(
        self, access_token: str, insurance_type: str, booking_id: str, insurance_cost: float, card_id: str
    ) -> dict[str, Any]:
        if error := self._token_error(access_token):
            return {"insurance_status": False, "error": error}
        if self.budget_limit is not None and self.budget_limit < insurance_cost:
            return {"insurance_status": False, "error": "Exceeded budget limit"}
        if booking_id not in self.booking_record:
            return {"insurance_status": False, "error": "Booking not found"}
        if card_id not in self.credit_card_list:
            return {"insurance_status": False, "error": "Credit card not registered"}
        self.credit_card_list[card_id]["balance"] -= insurance_cost
        return {"insurance_id": str(self._random.randint(100000000, 999999999)), "insurance_status": True}

    def contact_customer_support(self, booking_id: str, message: str) -> dict[str, str]:
        if booking_id not in self.booking_record:
            return {"error": "Booking not found"}
        return {
            "customer_support_message": "Thank you for contacting customer support. Your message has been received "
            "and we will get back to you shortly."
        }

    def get_all_credit_cards(self) -> dict[str, Any]:
        return {"credit_card_list": self.credit_card_list}
