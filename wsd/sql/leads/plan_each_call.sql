-- name: plan_each_call()!
-- Makes the transaction's statements planned for their own parameters (never a cached
-- generic plan): a filter left out (NULL) then drops from the plan and the given ones use
-- their indexes. Returns nothing.
SET LOCAL plan_cache_mode = force_custom_plan;
