-- databricks_auth 1.0 for the local Lakebase: databricks_create_role(identity, type).
\echo Use "CREATE EXTENSION databricks_auth" to load this file. \quit

-- Creates a LOGIN role named after a workspace identity, like Lakebase's function of the same
-- signature. The workspace directory is a JSON file the local control plane keeps up to date in
-- the data directory ({"identities": [{"name", "type", "id", "display_name"}]}); reading it with
-- pg_read_file needs superuser rights, which this SECURITY DEFINER function has.
-- SQLSTATEs as on Lakebase: 42501 caller not a member of databricks_superuser, 22023 unknown
-- identity / bad or mismatched type, 42710 role already exists.
CREATE FUNCTION databricks_create_role(identity_name text, identity_type text)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $function$
DECLARE
    -- Inside SECURITY DEFINER current_user is the owner; the caller is the session user, or the
    -- role it switched to with SET ROLE.
    caller text := CASE current_setting('role')
        WHEN 'none' THEN session_user::text
        ELSE current_setting('role')
    END;
    wanted text := upper(btrim(coalesce(identity_type, '')));
    directory jsonb;
    entry jsonb;
BEGIN
    IF NOT pg_has_role(caller, 'databricks_superuser', 'USAGE') THEN
        RAISE EXCEPTION 'permission denied to create role "%"', identity_name
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Role "%s" is not a member of databricks_superuser.', caller),
                  HINT = 'Roles for Databricks identities are created by the instance owner '
                         'or another member of databricks_superuser (CAN MANAGE).';
    END IF;
    IF wanted NOT IN ('USER', 'SERVICE_PRINCIPAL', 'GROUP') THEN
        RAISE EXCEPTION 'invalid identity type "%"', identity_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use USER, SERVICE_PRINCIPAL or GROUP.';
    END IF;
    IF identity_name IS NULL OR btrim(identity_name) = '' THEN
        RAISE EXCEPTION 'identity name must not be empty'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    directory := coalesce(
        pg_read_file('databricks_workspace_identities.json', true)::jsonb,
        '{"identities": []}'::jsonb
    );
    SELECT item INTO entry
    FROM jsonb_array_elements(directory -> 'identities') AS item
    WHERE item ->> 'name' = identity_name;
    IF entry IS NULL THEN
        RAISE EXCEPTION 'identity "%" not found in the Databricks workspace', identity_name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use a user''s email, a service principal''s application (client) id '
                         'or a group name.';
    END IF;
    IF entry ->> 'type' <> wanted THEN
        RAISE EXCEPTION 'identity "%" is a %, not a %', identity_name,
            lower(replace(entry ->> 'type', '_', ' ')), lower(replace(wanted, '_', ' '))
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM pg_roles WHERE rolname = identity_name) THEN
        RAISE EXCEPTION 'role "%" already exists', identity_name
            USING ERRCODE = 'duplicate_object';
    END IF;

    EXECUTE format('CREATE ROLE %I LOGIN', identity_name);
    -- What PostgreSQL 16+ gives a CREATEROLE user for a role it creates: ADMIN OPTION only, so
    -- the caller can grant or drop the new role without inheriting its privileges.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = caller) THEN
        EXECUTE format('GRANT %I TO %I WITH ADMIN TRUE, INHERIT FALSE, SET FALSE',
                       identity_name, caller);
    END IF;
END
$function$;

COMMENT ON FUNCTION databricks_create_role(text, text) IS
    'Create a login role for a Databricks identity (USER, SERVICE_PRINCIPAL or GROUP).';
