output "app_name" {
  description = "The function app: app of an azure_slots rollout."
  value       = azurerm_linux_function_app.this.name
}

output "default_hostname" {
  description = "Production's host name."
  value       = azurerm_linux_function_app.this.default_hostname
}

output "slot_name" {
  description = "The deployment slot candidates go to: slot of an azure_slots rollout."
  value       = azurerm_linux_function_app_slot.staging.name
}

output "slot_hostname" {
  description = "The slot's own host name (smoke tests before a swap)."
  value       = azurerm_linux_function_app_slot.staging.default_hostname
}

output "plan_id" {
  description = "Resource id of the service plan."
  value       = azurerm_service_plan.this.id
}
