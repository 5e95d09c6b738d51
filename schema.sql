-- chatd MySQL/MariaDB schema. The node applies it at start (every statement is idempotent);
-- the SQLite schema of the embedded default is derived from this file (chatd/store/sqlite.py).
-- Table names are those of the original C++ server. Presence is live (Redis), not a column.

CREATE TABLE IF NOT EXISTS User (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR(50) NOT NULL,
    password VARCHAR(255) NOT NULL,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_user_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS Friend (
    userid INT UNSIGNED NOT NULL,
    friendid INT UNSIGNED NOT NULL,
    PRIMARY KEY (userid, friendid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS AllGroup (
    id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    groupname VARCHAR(50) NOT NULL,
    groupdesc VARCHAR(200) NOT NULL DEFAULT '',
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_group_name (groupname)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS GroupUser (
    groupid INT UNSIGNED NOT NULL,
    userid INT UNSIGNED NOT NULL,
    grouprole VARCHAR(12) NOT NULL DEFAULT 'normal',
    PRIMARY KEY (groupid, userid),
    KEY ix_groupuser_user (userid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS OfflineMessage (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    userid INT UNSIGNED NOT NULL,
    mid BIGINT UNSIGNED NOT NULL,
    message MEDIUMTEXT NOT NULL,
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE KEY uq_offline_user_mid (userid, mid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Resume tokens (docs/protocol.md): the secret the nodes sign them with, created by the first
-- node that needs it, and per user the time (ms since the epoch) up to which a logout revoked
-- every token issued.
CREATE TABLE IF NOT EXISTS ServerSecret (
    name VARCHAR(32) NOT NULL PRIMARY KEY,
    secret VARCHAR(128) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE IF NOT EXISTS TokenRevocation (
    userid INT UNSIGNED NOT NULL PRIMARY KEY,
    revoked BIGINT UNSIGNED NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- Users an operator banned (chatd-admin ban): their logins are refused with errno 150.
CREATE TABLE IF NOT EXISTS Ban (
    userid INT UNSIGNED NOT NULL PRIMARY KEY,
    reason VARCHAR(200) NOT NULL DEFAULT '',
    created TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
