"""TradingBot: a stock account with orders, a watch list and a seeded transaction-timestamp stream."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any, ClassVar

from tools.bfcl.base import Backend, filler

__all__ = ["TradingBot"]

NOW = datetime(2024, 9, 1, 10, 30)
# symbol: price, percent_change, volume, MA(5), MA(20)
_STOCKS = {
    "AAPL": (227.16, 0.17, 2.552, 227.11, 227.09),
    "GOOG": (2840.34, 0.24, 1.123, 2835.67, 2842.15),
    "TSLA": (667.92, -0.12, 1.654, 671.15, 668.20),
    "MSFT": (310.23, 0.09, 3.234, 309.88, 310.11),
    "NVDA": (220.34, 0.34, 1.234, 220.45, 220.67),
    "ALPH": (1320.45, -0.08, 1.567, 1321.12, 1325.78),
    "OMEG": (457.23, 0.12, 2.345, 456.78, 458.12),
    "QUAS": (725.89, -0.03, 1.789, 726.45, 728.00),
    "NEPT": (88.34, 0.19, 0.654, 88.21, 88.67),
    "SYNX": (345.67, 0.11, 2.112, 345.34, 346.12),
    "ZETA": (22.09, -0.05, 0.789, 22.12, 22.34),
}
_SYMBOLS = {
    "Apple": "AAPL",
    "Google": "GOOG",
    "Tesla": "TSLA",
    "Microsoft": "MSFT",
    "Nvidia": "NVDA",
    "Zeta Corp": "ZETA",
    "Alpha Tech": "ALPH",
    "Omega Industries": "OMEG",
    "Quasar Ltd.": "QUAS",
    "Neptune Systems": "NEPT",
    "Synex Solutions": "SYNX",
    "Amazon": "AMZN",
    "Gorilla": "GORI",
}
_SECTORS = {"Technology": ["AAPL", "GOOG", "MSFT", "NVDA"], "Automobile": ["TSLA", "F", "GM"]}


def _default_stocks() -> dict[str, dict[str, float]]:
    keys = ("price", "percent_change", "volume", "MA(5)", "MA(20)")
    return {symbol: dict(zip(keys, row, strict=True)) for symbol, row in _STOCKS.items()}


class TradingBot(Backend):
    doc_file = "trading_bot"
    defaults: ClassVar[dict[str, Any]] = {
        "orders": {
            12345: {
                "id": 12345,
                "order_type": "Buy",
                "symbol": "AAPL",
                "price": 210.65,
                "amount": 10,
                "status": "Completed",
            },
            12446: {
                "id": 12446,
                "order_type": "Sell",
                "symbol": "GOOG",
                "price": 2840.56,
                "amount": 5,
                "status": "Pending",
            },
        },
        "account_info": {"account_id": 12345, "balance": 10000.0, "binding_card": 1974202140965533},
        "authenticated": False,
        "market_status": "Closed",
        "order_counter": 12446,
        "stocks": _default_stocks(),
        "watch_list": ["NVDA"],
        "transaction_history": [],
    }

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        orders = self._get(config, "orders")
        self.orders = {int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in orders.items()}
        for key in (
            "account_info",
            "authenticated",
            "market_status",
            "order_counter",
            "stocks",
            "watch_list",
            "transaction_history",
        ):
            setattr(self, key, self._get(config, key))
        self.long_context = long_context
        self._random = random.Random(config.get("random_seed", 1053520))

    def _timestamp(self) -> str:
        # BFCL draws an epoch second in [now, now + 1 day] and formats it in local time; randint's offset from
        # the lower bound does not depend on the bound, so adding it to NOW is the same and timezone-free.
        low = 1_725_186_600
        offset = self._random.randint(low, low + 86_400) - low
        return (NOW + timedelta(seconds=offset)).strftime("%Y-%m-%d %H:%M:%S")

    def _need_auth(self, what: str) -> dict[str, str] | None:
        if self.authenticated:
            return None
        return {"error": f"User not authenticated. Please log in to {what}."}

    def get_current_time(self) -> dict[str, str]:
        return {"current_time": NOW.strftime("%I:%M %p")}

    def get_symbol_by_name(self, name: str) -> dict[str, str]:
        return {"symbol": _SYMBOLS.get(name, "Stock not found")}

    def get_stock_info(self, symbol: str) -> dict[str, Any]:
        if symbol not in self.stocks:
            return {"error": f"Stock with symbol '{symbol}' not found."}
        if self.long_context:
            stock = dict(self.stocks[symbol])
            stock["MA(5)"] = filler("ma_5_extension")
            stock["MA(20)"] = filler("ma_20_extension")
            return stock
        stock_info: dict[str, Any] = self.stocks[symbol]
        return stock_info

    def get_order_details(self, order_id: int) -> dict[str, Any]:
        if order_id not in self.orders:
            return {"error": f"Order with ID {order_id} not found.Here is the list of orders_id: {list(self.orders)}"}
        if self.long_context:
            order = dict(self.orders[order_id])
            template: dict[str, str] = filler("order_detail_extension")
            order["metadata"] = {key: value.replace("{symbol}", order["symbol"]) for key, value in template.items()}
            return order
        details: dict[str, Any] = self.orders[order_id]
        return details

    def cancel_order(self, order_id: int) -> dict[str, Any]:
        if order_id not in self.orders:
            return {"error": f"Order with ID {order_id} not found."}
        if self.orders[order_id]["status"] == "Completed":
            return {"error": f"Can't cancel order {order_id}. Order is already completed."}
        self.orders[order_id]["status"] = "Cancelled"
        return {"order_id": order_id, "status": "Cancelled"}

    def place_order(self, order_type: str, symbol: str, price: float, amount: int) -> dict[str, Any]:
        if error := self._need_auth("place an order"):
            return error
        if symbol not in self.stocks:
            return {"error": f"Invalid stock symbol: {symbol}"}
        if price <= 0 or amount <= 0:
            return {"error": "Price and amount must be positive values."}
        price = float(price)
        order_id = self.order_counter
        self.orders[order_id] = {
            "id": order_id,
            "order_type": order_type,
            "symbol": symbol,
            "price": price,
            "amount": amount,
            "status": "Open",
        }
        self.order_counter += 1
        # The reply says "Pending" while the stored order is "Open", as in BFCL.
        return {"order_id": order_id, "order_type": order_type, "status": "Pending", "price": price, "amount": amount}

    def withdraw_funds(self, amount: float) -> dict[str, Any]:
        if error := self._need_auth("make a transaction"):
            return error
        if self.market_status != "Open":
            return {"error": "Market is closed. Transactions are not allowed."}
        if amount <= 0:
            return {"error": "Transaction amount must be positive."}
        if amount > self.account_info["balance"]:
            return {"error": "Insufficient funds for withdrawal."}
        self.account_info["balance"] -= amount
        self.transaction_history.append({"type": "withdrawal", "amount": amount, "timestamp": self._timestamp()})
        return {"status": "Withdrawal successful", "new_balance": self.account_info["balance"]}

    def get_account_info(self) -> dict[str, Any]:
        if error := self._need_auth("view account information"):
            return error
        info: dict[str, Any] = self.account_info
        return info

    def trading_login(self, username: str, password: str) -> dict[str, str]:
        if self.authenticated:
            return {"status": "Already logged in"}
        self.authenticated = True
        return {"status": "Logged in successfully"}

    def trading_get_login_status(self) -> dict[str, bool]:
        return {"status": bool(self.authenticated)}

    def trading_logout(self) -> dict[str, str]:
        if not self.authenticated:
            return {"status": "No user is currently logged in"}
        self.authenticated = False
        return {"status": "Logged out successfully"}

    def fund_account(self, amount: float) -> dict[str, Any]:
        if error := self._need_auth("fund the account"):
            return error
        if amount <= 0:
            return {"error": "Funding amount must be positive."}
        self.account_info["balance"] += amount
        self.transaction_history.append({"type": "deposit", "amount": amount, "timestamp": self._timestamp()})
        return {"status": "Account funded successfully", "new_balance": self.account_info["balance"]}

    def remove_stock_from_watchlist(self, symbol: str) -> dict[str, str]:
        if error := self._need_auth("modify the watchlist"):
            return error
        if symbol not in self.watch_list:
            return {"error": f"Stock {symbol} not found in watchlist."}
        self.watch_list.remove(symbol)
        return {"status": f"Stock {symbol} removed from watchlist successfully."}

    def get_watchlist(self) -> Any:
        if not self.authenticated:
            return ["Error: User not authenticated. Please log in to view the watchlist."]
        if self.long_context:
            return [*self.watch_list, *filler("watch_list_extension")]
        return {"watchlist": self.watch_list}

    def get_order_history(self) -> Any:
        if error := self._need_auth("view order history"):
            return [error]
        return {"history": list(self.orders)}

    def get_transaction_history(self, start_date: str | None = None, end_date: str | None = None) -> Any:
        if error := self._need_auth("view transaction history"):
            return [error]
        start = datetime.strptime(start_date, "%Y-%m-%d") if start_date else datetime.min
        end = datetime.strptime(end_date, "%Y-%m-%d") if end_date else datetime.max
        history = [
            entry
            for entry in self.transaction_history
            if start <= datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S") <= end
        ]
        if self.long_context:
            history.extend(filler("transaction_history_extension"))
        return {"transaction_history": history}

    def get_available_stocks(self, sector: str) -> dict[str, list[str]]:
        sectors = {name: list(symbols) for name, symbols in _SECTORS.items()}
        if self.long_context:
            sectors["Technology"].extend(filler("technology_extension"))
            sectors["Automobile"].extend(filler("automobile_extension"))
        return {"stock_list": sectors.get(sector, [])}

    def filter_stocks_by_price(self, stocks: list[str], min_price: float, max_price: float) -> dict[str, Any]:
        def price(symbol: str) -> Any:
            return self.stocks.get(symbol, {}).get("price", 0)

        return {"filtered_stocks": [s for s in stocks if price(s) >= min_price and price(s) <= max_price]}

    def add_to_watchlist(self, stock: str) -> dict[str, Any]:
        if stock not in self.watch_list and stock in self.stocks:
            self.watch_list.append(stock)
        return {"watchlist": self.watch_list}

    def notify_price_change(self, stocks: list[str], threshold: float) -> dict[str, str]:
        changed = [s for s in stocks if s in self.stocks and abs(self.stocks[s]["percent_change"]) >= threshold]
        if changed:
            return {"notification": f"Stocks {', '.join(changed)} have significant price changes."}
        return {"notification": "No significant price changes in the selected stocks."}
