# The flightdeck scorer as an Azure function app (Python v2 programming model: function_app.py,
# host.json, requirements.txt built remotely), its plan, and the staging slot that blue-green
# releases deploy to and swap into production (target azure_slots).

locals {
  tags = merge(var.tags, { "managed-by" = "terraform" })
  app_settings = {
    FUNCTIONS_WORKER_RUNTIME       = "python"
    SCM_DO_BUILD_DURING_DEPLOYMENT = "true"
    FLIGHTDECK_MODEL_NAME          = var.model_name
    FLIGHTDECK_MODEL_VERSION       = var.model_version
    FLIGHTDECK_MAX_BATCH_ROWS      = "1000"
  }
}

resource "azurerm_service_plan" "this" {
  name                         = "${var.name}-plan"
  resource_group_name          = var.resource_group_name
  location                     = var.location
  os_type                      = "Linux"
  sku_name                     = var.sku_name
  maximum_elastic_worker_count = var.maximum_elastic_worker_count
  worker_count                 = 3
  zone_balancing_enabled       = true
  tags                         = local.tags
}

resource "azurerm_linux_function_app" "this" {
  name                          = var.name
  resource_group_name           = var.resource_group_name
  location                      = var.location
  service_plan_id               = azurerm_service_plan.this.id
  storage_account_name          = var.storage_account_name
  storage_uses_managed_identity = true
  https_only                    = true
  public_network_access_enabled = length(var.allowed_ip_ranges) > 0
  client_certificate_enabled    = true
  client_certificate_mode       = "OptionalInteractiveUser"
  functions_extension_version   = "~4"
  app_settings                  = local.app_settings
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    minimum_tls_version    = "1.2"
    ftps_state             = "Disabled"
    http2_enabled          = true
    vnet_route_all_enabled = true

    application_stack {
      python_version = "3.11"
    }

    dynamic "ip_restriction" {
      for_each = var.allowed_ip_ranges
      content {
        ip_address = ip_restriction.value
        action     = "Allow"
      }
    }
  }

  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    unauthenticated_action = "Return401"

    login {}
  }

  # Releases own the package and the model version in production (slot swaps move them).
  lifecycle {
    ignore_changes = [app_settings["FLIGHTDECK_MODEL_VERSION"], app_settings["WEBSITE_RUN_FROM_PACKAGE"]]
  }
}

resource "azurerm_linux_function_app_slot" "staging" {
  name                          = var.slot_name
  function_app_id               = azurerm_linux_function_app.this.id
  storage_account_name          = var.storage_account_name
  storage_uses_managed_identity = true
  https_only                    = true
  public_network_access_enabled = length(var.allowed_ip_ranges) > 0
  client_certificate_enabled    = true
  client_certificate_mode       = "OptionalInteractiveUser"
  functions_extension_version   = "~4"
  app_settings                  = local.app_settings
  tags                          = local.tags

  identity {
    type = "SystemAssigned"
  }

  site_config {
    minimum_tls_version    = "1.2"
    ftps_state             = "Disabled"
    http2_enabled          = true
    vnet_route_all_enabled = true

    application_stack {
      python_version = "3.11"
    }

    dynamic "ip_restriction" {
      for_each = var.allowed_ip_ranges
      content {
        ip_address = ip_restriction.value
        action     = "Allow"
      }
    }
  }

  auth_settings_v2 {
    auth_enabled           = true
    require_authentication = true
    unauthenticated_action = "Return401"

    login {}
  }

  lifecycle {
    ignore_changes = [app_settings["FLIGHTDECK_MODEL_VERSION"], app_settings["WEBSITE_RUN_FROM_PACKAGE"]]
  }
}

# The Functions host's state, through each identity: blob data on that one account, nothing else.
resource "azurerm_role_assignment" "app_storage" {
  scope                = var.storage_account_id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_linux_function_app.this.identity[0].principal_id
}

resource "azurerm_role_assignment" "slot_storage" {
  scope                = var.storage_account_id
  role_definition_name = "Storage Blob Data Owner"
  principal_id         = azurerm_linux_function_app_slot.staging.identity[0].principal_id
}
