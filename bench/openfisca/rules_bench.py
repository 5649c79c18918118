#!/usr/bin/env python3
"""OpenFisca side of `citybrain bench rules`: the same people and households
that citybrain decides, computed by openfisca-country-template's
basic_income and parenting_allowance, for period 2016-01.

Usage: python rules_bench.py DIR REPEATS

DIR holds little-endian arrays written by citybrain:
  birth.i32      days since 1970-01-01, per person
  salary.f32     monthly salary, per person
  household.i32  the household of each person (0-based, contiguous)
  role.i8        0 = adult, 1 = child (the template's Household roles)
It writes basic_income.f32 (per person) and parenting_allowance.f32 (per
household) back into DIR and prints one JSON line with the calculation
times of each timed repeat (a fresh simulation each time; building it is
timed apart), after as many untimed repeats to warm up. Only openfisca-core's public SimulationBuilder API is used.
"""
import json
import os
import sys
import time

import numpy as np

t0 = time.perf_counter()
from openfisca_core.simulation_builder import SimulationBuilder  # noqa: E402
from openfisca_country_template import CountryTaxBenefitSystem  # noqa: E402

tbs = CountryTaxBenefitSystem()
t_load = time.perf_counter() - t0

d = sys.argv[1]
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
birth = np.fromfile(os.path.join(d, "birth.i32"), dtype="<i4").astype("datetime64[D]")
salary = np.fromfile(os.path.join(d, "salary.f32"), dtype="<f4")
household = np.fromfile(os.path.join(d, "household.i32"), dtype="<i4")
role = np.fromfile(os.path.join(d, "role.i8"), dtype="<i1").astype(np.int64)
n = len(birth)
n_households = int(household.max()) + 1 if n else 0
PERIOD = "2016-01"

builds, basic, parenting = [], [], []
# A warm-up round first, as citybrain's side does: REPEATS untimed runs,
# then REPEATS timed ones.
for k in range(2 * repeats):
    if k == repeats:
        builds, basic, parenting = [], [], []
    t1 = time.perf_counter()
    b = SimulationBuilder()
    b.create_entities(tbs)
    b.declare_person_entity("person", np.arange(n))
    hh = b.declare_entity("household", np.arange(n_households))
    b.join_with_persons(hh, household, role)
    sim = b.build(tbs)
    sim.set_input("birth", "ETERNITY", birth)
    sim.set_input("salary", PERIOD, salary)
    builds.append(time.perf_counter() - t1)
    t2 = time.perf_counter()
    bi = sim.calculate("basic_income", PERIOD)
    basic.append(time.perf_counter() - t2)
    t3 = time.perf_counter()
    pa = sim.calculate("parenting_allowance", PERIOD)
    parenting.append(time.perf_counter() - t3)

bi.astype("<f4").tofile(os.path.join(d, "basic_income.f32"))
pa.astype("<f4").tofile(os.path.join(d, "parenting_allowance.f32"))
from importlib.metadata import version  # noqa: E402
print(json.dumps({
    "persons": n,
    "households": n_households,
    "openfisca_core": version("openfisca-core"),
    "openfisca_country_template": version("openfisca-country-template"),
    "t_import_and_load_tbs_s": t_load,
    "t_build_s": builds,
    "t_basic_income_s": basic,
    "t_parenting_allowance_s": parenting,
}))
