"""VehicleControlAPI: a car with doors, engine, brakes, climate, cruise control and navigation."""

# Method and argument names are BFCL's own (camelCase included): models call them by these names.
# ruff: noqa: N802, N803

from __future__ import annotations

import random
from typing import Any, ClassVar

from tools.bfcl.base import Backend, filler

__all__ = ["VehicleControlAPI"]

MAX_FUEL = 50
MILES_PER_GALLON = 20.0
# Known distances (km) between zip codes, symmetric.
_DISTANCES = {
    frozenset(("83214", "74532")): 750.0,
    frozenset(("56108", "62947")): 320.0,
    frozenset(("71354", "83462")): 450.0,
    frozenset(("47329", "52013")): 290.0,
    frozenset(("69238", "51479")): 630.0,
    frozenset(("94016", "83214")): 980.0,
    frozenset(("94016", "94704")): 600.0,
    frozenset(("94704", "08540")): 2550.0,
    frozenset(("94016", "08540")): 1950.0,
    frozenset(("62947", "47329")): 1053.0,
    frozenset(("94016", "62947")): 780.0,
    frozenset(("74532", "94016")): 880.0,
}
_ZIPCODES = {
    "Rivermist": "83214",
    "Stonebrook": "74532",
    "Maplecrest": "56108",
    "Silverpine": "62947",
    "Shadowridge": "71354",
    "Sunset Valley": "83462",
    "Oakendale": "47329",
    "Willowbend": "52013",
    "Crescent Hollow": "69238",
    "Autumnville": "51479",
    "San Francisco": "94016",
}


class VehicleControlAPI(Backend):
    doc_file = "vehicle_control"
    defaults: ClassVar[dict[str, Any]] = {
        "fuelLevel": 0.0,
        "batteryVoltage": 12.6,
        "engineState": "stopped",
        "doorStatus": {
            "driver": "unlocked",
            "passenger": "unlocked",
            "rear_left": "unlocked",
            "rear_right": "unlocked",
        },
        "acTemperature": 25.0,
        "fanSpeed": 50,
        "acMode": "auto",
        "humidityLevel": 50.0,
        "headLightStatus": "off",
        "parkingBrakeStatus": "released",
        "parkingBrakeForce": 0.0,
        "slopeAngle": 0.0,
        "brakePedalStatus": "released",
        "brakePedalForce": 0.0,
        "distanceToNextVehicle": 50.0,
        "cruiseStatus": "inactive",
        "destination": "None",
        "frontLeftTirePressure": 32.0,
        "frontRightTirePressure": 32.0,
        "rearLeftTirePressure": 30.0,
        "rearRightTirePressure": 30.0,
    }

    def load(self, config: dict[str, Any], long_context: bool = False) -> None:
        self._random = random.Random(config.get("random_seed", 141053))
        self.fuelLevel = self._get(config, "fuelLevel")
        self.batteryVoltage = self._get(config, "batteryVoltage")
        self.engine_state = self._get(config, "engineState")
        self.remainingUnlockedDoors = 0  # placeholder keeps BFCL's attribute order; recomputed below
        self.doorStatus = self._get(config, "doorStatus")
        self.remainingUnlockedDoors = 4 - sum(1 for status in self.doorStatus.values() if status == "locked")
        self.acTemperature = self._get(config, "acTemperature")
        self.fanSpeed = self._get(config, "fanSpeed")
        self.acMode = self._get(config, "acMode")
        self.humidityLevel = self._get(config, "humidityLevel")
        self.headLightStatus = self._get(config, "headLightStatus")
        self.parkingBrakeStatus = self._get(config, "parkingBrakeStatus")
        self._parkingBrakeForce = self._get(config, "parkingBrakeForce")
        self._slopeAngle = self._get(config, "slopeAngle")
        self.brakePedalStatus = self._get(config, "brakePedalStatus")
        self._brakePedalForce = self._get(config, "brakePedalForce")
        for key in (
            "distanceToNextVehicle",
            "cruiseStatus",
            "destination",
            "frontLeftTirePressure",
            "frontRightTirePressure",
            "rearLeftTirePressure",
            "rearRightTirePressure",
        ):
            setattr(self, key, self._get(config, key))
        self.long_context = long_context

    def startEngine(self, ignitionMode: str) -> dict[str, Any]:
        if ignitionMode == "STOP":
            self.engine_state = "stopped"
        if self.remainingUnlockedDoors > 0:
            unlocked = [door for door, status in self.doorStatus.items() if status == "unlocked"]
            return {
                "error": "All doors must be locked before starting the engine. Here are the unlocked doors: "
                + ", ".join(unlocked)
            }
        if self.brakePedalStatus != "pressed":
            return {"error": "Brake pedal needs to be pressed when starting the engine."}
        if self._brakePedalForce != 1000.0:
            return {"error": "Must press the brake fully before starting the engine."}
        if self.fuelLevel < 0.0:
            return {"error": "Fuel tank is empty."}
        if ignitionMode != "START":
            return {"error": "Invalid ignition mode."}
        self.engine_state = "running"
        return {"engineState": self.engine_state, "fuelLevel": self.fuelLevel, "batteryVoltage": self.batteryVoltage}

    def fillFuelTank(self, fuelAmount: float) -> dict[str, Any]:
        if fuelAmount < 0:
            return {"error": "Fuel amount cannot be negative."}
        if self.fuelLevel + fuelAmount > MAX_FUEL:
            return {"error": "Cannot fill gas above the tank capacity."}
        if self.fuelLevel + fuelAmount < 0.0:
            return {"error": "Fuel tank is empty. Min fuel level is 0 gallons."}
        self.fuelLevel += fuelAmount
        return {"fuelLevel": self.fuelLevel}

    def lockDoors(self, unlock: bool, door: list[str]) -> dict[str, Any]:
        wanted = "unlocked" if unlock else "locked"
        for name in door:
            if self.doorStatus[name] == wanted:
                continue
            self.doorStatus[name] = wanted
            self.remainingUnlockedDoors += 1 if unlock else -1
        return {"lockStatus": wanted, "remainingUnlockedDoors": self.remainingUnlockedDoors}

    def adjustClimateControl(
        self,
        temperature: float,
        unit: str = "celsius",
        fanSpeed: int = 50,
        mode: str = "auto",
    ) -> dict[str, Any]:
        if not (0 <= fanSpeed <= 100):
            return {"error": "Fan speed must be between 0 and 100."}
        self.acTemperature = (temperature - 32) * 5 / 9 if unit == "fahrenheit" else temperature
        self.fanSpeed = fanSpeed
        self.acMode = mode
        return {"currentACTemperature": temperature, "climateMode": mode, "humidityLevel": self.humidityLevel}

    def get_outside_temperature_from_google(self) -> dict[str, Any]:
        reading = {"outsideTemperature": self._random.uniform(-10.0, 40.0)}
        if self.long_context:
            # BFCL's answer is its 15-day weather history with the reading added last.
            report: dict[str, Any] = filler("long_weather_extension")
            report["outsideTemperature"] = reading["outsideTemperature"]
            return report
        return reading

    def get_outside_temperature_from_weather_com(self) -> dict[str, int]:
        return {"error": 404}

    def setHeadlights(self, mode: str) -> dict[str, str]:
        if mode not in ("on", "off", "auto"):
            return {"error": "Invalid headlight mode."}
        self.headLightStatus = "on" if mode == "on" else "off"
        return {"headlightStatus": self.headLightStatus}

    def displayCarStatus(self, option: str) -> dict[str, Any]:
        status: dict[str, Any] = {}
        if self.long_context:
            status["metadata"] = filler("car_status_metadata_extension")
        if option == "fuel":
            status["fuelLevel"] = self.fuelLevel
        elif option == "battery":
            status["batteryVoltage"] = self.batteryVoltage
        elif option == "doors":
            status["doorStatus"] = self.doorStatus
        elif option == "climate":
            status.update(
                currentACTemperature=self.acTemperature,
                fanSpeed=self.fanSpeed,
                climateMode=self.acMode,
                humidityLevel=self.humidityLevel,
            )
        elif option == "headlights":
            status["headlightStatus"] = self.headLightStatus
        elif option == "parkingBrake":
            status.update(
                parkingBrakeStatus=self.parkingBrakeStatus,
                parkingBrakeForce=self._parkingBrakeForce,
                slopeAngle=self._slopeAngle,
            )
        elif option == "brakePedal":
            status.update(brakePedalStatus=self.brakePedalStatus, brakePedalForce=self._brakePedalForce)
        elif option == "engine":
            status["engineState"] = self.engine_state
        else:
            status["error"] = "Invalid option"
        return status

    def activateParkingBrake(self, mode: str) -> dict[str, Any]:
        if mode not in ("engage", "release"):
            return {"error": "Invalid mode"}
        self.parkingBrakeStatus = "engaged" if mode == "engage" else "released"
        self._parkingBrakeForce = 500.0 if mode == "engage" else 0.0
        self._slopeAngle = 10.0
        reply: dict[str, Any] = {}
        if self.long_context:
            reply["parkingBrakeInstruction"] = filler("parking_brake_instruction")
        reply.update(
            parkingBrakeStatus=self.parkingBrakeStatus, _parkingBrakeForce=self._parkingBrakeForce, _slopeAngle=10.0
        )
        return reply

    def pressBrakePedal(self, pedalPosition: float) -> dict[str, Any]:
        if not (0 <= pedalPosition <= 1):
            return {"error": "Pedal position must be between 0 and 1."}
        if pedalPosition == 0:
            self.brakePedalStatus = "released"
            self._brakePedalForce = 0.0
            return {"brakePedalStatus": "released", "brakePedalForce": 0.0}
        force = pedalPosition * 1000
        self.brakePedalStatus = "pressed"
        self._brakePedalForce = force
        return {"brakePedalStatus": "pressed", "brakePedalForce": float(force)}

    def releaseBrakePedal(self) -> dict[str, Any]:
        self.brakePedalStatus = "released"
        self._brakePedalForce = 0.0
        return {"brakePedalStatus": "released", "brakePedalForce": 0.0}

    def setCruiseControl(
        self,
        speed: float,
        activate: bool,
        distanceToNextVehicle: float,
    ) -> dict[str, Any]:
        if self.engine_state == "stopped":
            return {"error": "Start the engine before activating the cruise control."}
        self.distanceToNextVehicle = float(distanceToNextVehicle)
        if activate:
            if speed < 0 or speed > 120 or speed % 5 != 0:
                return {"error": "Invalid speed"}
            self.cruiseStatus = "active"
        else:
            self.cruiseStatus = "inactive"
        return {
            "cruiseStatus": self.cruiseStatus,
            "currentSpeed": float(speed),
            "distanceToNextVehicle": float(distanceToNextVehicle),
        }

    def get_current_speed(self) -> dict[str, float]:
        return {"currentSpeed": self._random.uniform(0.0, 120.0)}

    def display_log(self, messages: list[str]) -> dict[str, Any]:
        return {"log": messages}

    def estimate_drive_feasibility_by_mileage(self, distance: float) -> dict[str, bool]:
        return {"canDrive": not self.fuelLevel * MILES_PER_GALLON < distance}

    def liter_to_gallon(self, liter: float) -> dict[str, float]:
        return {"gallon": liter * 0.264172}

    def gallon_to_liter(self, gallon: float) -> dict[str, float]:
        return {"liter": gallon * 3.78541}

    def estimate_distance(self, cityA: str, cityB: str) -> dict[str, Any]:
        known = _DISTANCES.get(frozenset((cityA, cityB))) if cityA != cityB else None
        result: dict[str, Any] = (
            {"distance": known} if known is not None else {"error": "distance not found in database."}
        )
        if self.long_context:
            result["intermediaryCities"] = filler("intermediary_cities")
        return result

    def get_zipcode_based_on_city(self, city: str) -> dict[str, str]:
        return {"zipcode": _ZIPCODES.get(city, "00000")}

    def set_navigation(self, destination: str) -> dict[str, str]:
        self.destination = destination
        return {"status": "Navigating to " + destination}

    def check_tire_pressure(self) -> dict[str, Any]:
        pressures = {
            "frontLeftTirePressure": self.frontLeftTirePressure,
            "frontRightTirePressure": self.frontRightTirePressure,
            "rearLeftTirePressure": self.rearLeftTirePressure,
            "rearRightTirePressure": self.rearRightTirePressure,
        }
        average = (
            self.frontLeftTirePressure
            + self.frontRightTirePressure
            + self.rearLeftTirePressure
            + self.rearRightTirePressure
        ) / 4
        status: dict[str, Any] = {**pressures, "healthy_tire_pressure": 30 <= average <= 35, "car_info": {}}
        if self.long_context:
            status["car_info"] = filler("car_status_metadata_extension")
        return status

    def find_nearest_tire_shop(self) -> dict[str, str]:
        return {"shopLocation": "456 Oakwood Avenue, Rivermist, 83214"}
