// Everything public of es::shred (the PostgreSQL key store is in
// es/shred/postgres_key_store.hpp, library es::shred_postgres).
#pragma once

#include "es/shred/errors.hpp"
#include "es/shred/key_store.hpp"
#include "es/shred/shredding_policy.hpp"
#include "es/shred/shredding_store.hpp"
#include "es/shred/sqlite_key_store.hpp"
